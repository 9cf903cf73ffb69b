#!/usr/bin/env node
// Registers a service with the registrar and gets an access token for it,
// with @grpc/grpc-js and @grpc/proto-loader, which load the proto at run
// time, so no stubs are generated.
//
// 1. RegisterService creates the service app (or finds the existing one)
//    with a key that the registrar generates and holds, and grants one
//    scope.
// 2. GrantScopes grants a second scope.
// 3. GetAccessToken gets a token with both scopes.
// 4. WatchRotations returns the app's key state, and the program prints the
//    first message.
//
// It exits with status 1 and a message on standard error when a call fails.
// The access token is a secret, so only its length and first characters are
// printed.
//
//     node register_service.mjs 127.0.0.1:50051 [--service-name NAME] [--token-file FILE]
//
// Against a registrar that authenticates callers by bearer token,
// --token-file names a file that contains the token; every call then sends
// it as `authorization: Bearer <token>`.

import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import path from "node:path";

import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";

const PROTO_ROOT = fileURLToPath(new URL("../../proto", import.meta.url));
const REGISTERED_SCOPE = "okta.users.read";
const GRANTED_SCOPE = "okta.apps.read";
// Milliseconds each call may take. Creating an app calls Okta several times.
const CALL_TIMEOUT_MS = 60_000;
// Characters of the access token that are printed.
const TOKEN_PREFIX_LENGTH = 8;

const USAGE =
  "usage: node register_service.mjs ADDRESS [--service-name NAME] [--token-file FILE]";

function parseCommandLine() {
  let parsed;
  try {
    parsed = parseArgs({
      allowPositionals: true,
      options: {
        "service-name": { type: "string", default: "node-example" },
        "token-file": { type: "string" },
      },
    });
  } catch (error) {
    throw new Error(`${error.message}\n${USAGE}`);
  }
  if (parsed.positionals.length !== 1) {
    throw new Error(`expected one registrar address such as 127.0.0.1:50051\n${USAGE}`);
  }
  return {
    address: parsed.positionals[0],
    serviceName: parsed.values["service-name"],
    tokenFile: parsed.values["token-file"],
  };
}

// Returns an interceptor that adds the bearer token in tokenFile to the
// metadata of every call, or none without a file.
function bearerInterceptors(tokenFile) {
  if (tokenFile === undefined) {
    return [];
  }
  let token;
  try {
    token = readFileSync(tokenFile, "ascii").trim();
  } catch (error) {
    throw new Error(`cannot read the bearer token from ${tokenFile}: ${error.message}`);
  }
  if (token === "" || /\s/.test(token)) {
    throw new Error(`${tokenFile} must contain one bearer token without spaces`);
  }
  const interceptor = (options, nextCall) =>
    new grpc.InterceptingCall(nextCall(options), {
      start(metadata, listener, next) {
        metadata.set("authorization", `Bearer ${token}`);
        next(metadata, listener);
      },
    });
  return [interceptor];
}

function loadRegistrarService() {
  // keepCase keeps the proto's snake_case field names. Longs as strings keep
  // uint64 revisions exact, and enums as strings print their names.
  const definition = protoLoader.loadSync(path.join(PROTO_ROOT, "registrar/v1/registrar.proto"), {
    keepCase: true,
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
    includeDirs: [PROTO_ROOT],
  });
  return grpc.loadPackageDefinition(definition).registrar.v1.Registrar;
}

function deadline() {
  return { deadline: Date.now() + CALL_TIMEOUT_MS };
}

// Calls a unary RPC and returns a promise of its response, naming the RPC
// when it fails.
function call(client, name, request) {
  return new Promise((resolve, reject) => {
    client[name](request, deadline(), (error, response) => {
      if (error) {
        reject(new Error(`${name} failed: ${describe(error)}`));
      } else {
        resolve(response);
      }
    });
  });
}

// Opens WatchRotations and resolves with its first message, then cancels
// the stream.
function firstRotationState(client, clientId) {
  return new Promise((resolve, reject) => {
    const stream = client.WatchRotations({ client_ids: [clientId] }, deadline());
    let settled = false;
    const settle = (action, value) => {
      if (!settled) {
        settled = true;
        action(value);
      }
    };
    stream.on("data", (message) => {
      settle(resolve, message);
      stream.cancel();
    });
    stream.on("error", (error) => {
      settle(reject, new Error(`WatchRotations failed: ${describe(error)}`));
    });
    stream.on("end", () => {
      settle(reject, new Error("WatchRotations ended before its first message"));
    });
  });
}

function describe(error) {
  const codeName = Object.keys(grpc.status).find((name) => grpc.status[name] === error.code);
  return `${codeName ?? error.code}: ${error.details}`;
}

// Throws when the registrar reports a scope that Okta did not grant.
function checkScopes(name, results) {
  const failed = results
    .filter((result) => result.outcome === "SCOPE_OUTCOME_FAILED")
    .map((result) => `${result.scope_id} (${result.error})`);
  if (failed.length > 0) {
    throw new Error(`${name} could not grant ${failed.join(", ")}`);
  }
}

function formatScopes(results) {
  return results.map((result) => `${result.scope_id}:${result.outcome}`).join(",");
}

function formatTimestamp(timestamp) {
  if (!timestamp) {
    return "unset";
  }
  return new Date(Number(timestamp.seconds) * 1000 + timestamp.nanos / 1e6).toISOString();
}

async function run(client, serviceName) {
  const registered = await call(client, "RegisterService", {
    service_name: serviceName,
    scope_ids: [REGISTERED_SCOPE],
    key: { algorithm: "KEY_ALGORITHM_ES256" },
  });
  const clientId = registered.app.client_id;
  checkScopes("RegisterService", registered.grants);
  console.log(
    `RegisterService: client_id=${clientId} created=${registered.created} ` +
      `grants=${formatScopes(registered.grants)}`,
  );

  const granted = await call(client, "GrantScopes", {
    client_id: clientId,
    scope_ids: [GRANTED_SCOPE],
  });
  checkScopes("GrantScopes", granted.results);
  console.log(`GrantScopes: client_id=${clientId} grants=${formatScopes(granted.results)}`);

  const token = await call(client, "GetAccessToken", {
    client_id: clientId,
    scopes: [REGISTERED_SCOPE, GRANTED_SCOPE],
  });
  console.log(
    `GetAccessToken: token_type=${token.token_type} scopes=${token.scopes.join(",")} ` +
      `expires_at=${formatTimestamp(token.expires_at)} length=${token.access_token.length} ` +
      `prefix=${token.access_token.slice(0, TOKEN_PREFIX_LENGTH)}...`,
  );

  const state = await firstRotationState(client, clientId);
  if (state.apps.length === 0) {
    throw new Error("WatchRotations sent a message without apps");
  }
  for (const app of state.apps) {
    console.log(
      `WatchRotations: client_id=${app.client_id} revision=${app.revision} ` +
        `signing_kid=${app.signing_kid} phase=${app.phase}`,
    );
  }
}

async function main() {
  const { address, serviceName, tokenFile } = parseCommandLine();
  const Registrar = loadRegistrarService();
  const client = new Registrar(address, grpc.credentials.createInsecure(), {
    interceptors: bearerInterceptors(tokenFile),
  });
  try {
    await run(client, serviceName);
  } finally {
    client.close();
  }
}

main().catch((error) => {
  console.error(`error: ${error.message}`);
  process.exit(1);
});
