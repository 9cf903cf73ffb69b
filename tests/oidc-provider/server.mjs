// A loopback OpenID provider for the registrar's end-to-end tests. It runs
// panva's oidc-provider with open RFC 7591 registration at /reg, the
// client_credentials grant and private_key_jwt client authentication.
// NOTE: oidc-provider 9.13 supports Node.js 22 and later. On Node.js 20 it
// logs an "Unsupported runtime" warning, and the tests pass.
//
// Usage: node server.mjs [PORT]. It listens on 127.0.0.1 (port 0, so any
// free port, by default), prints the single stdout line
// `issuer=http://127.0.0.1:PORT` once it accepts connections, and exits on
// SIGTERM, SIGINT or when stdin closes. Every error the token and
// registration endpoints return is logged to stderr as one JSON line with
// the provider's `error_detail`, because the response body of a client
// authentication failure is only `invalid_client` with the description
// "client authentication failed".

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';

import Provider, { errors } from 'oidc-provider';

const HOST = '127.0.0.1';

// Notices from oidc-provider go to stderr, so stdout contains only the
// issuer line.
console.info = console.error;

const port = Number(process.argv[2] ?? 0);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error(`invalid port ${JSON.stringify(process.argv[2])}; expected 0-65535`);
  process.exit(2);
}

// The port is known only once the socket is bound, and the provider needs
// its issuer at construction, so the HTTP server listens first and gets
// the provider's handler afterwards.
const server = createServer();
await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(port, HOST, resolve);
});
const issuer = `http://${HOST}:${server.address().port}`;

// A fresh signing key per run, instead of the provider's development keys.
const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: 'jwk' }), alg: 'RS256', use: 'sig' };

const provider = new Provider(issuer, {
  jwks: { keys: [signingKey] },
  cookies: { keys: [randomBytes(32).toString('base64url')] },
  features: {
    clientCredentials: { enabled: true },
    // Open registration (no initial access token), acceptable only because
    // the server listens on loopback.
    registration: { enabled: true },
    devInteractions: { enabled: false },
  },
  clientAuthMethods: ['private_key_jwt'],
  // Scopes missing from this list are dropped from token requests without
  // an error.
  scopes: ['openid', 'okta.users.read', 'okta.apps.read'],
  // By default oidc-provider 9.13 accepts as the assertion's `aud` the issuer,
  // the token endpoint URL or the URL of the endpoint called. Okta accepts
  // only the token endpoint URL, and so does this hook. It runs after the
  // signature check and before the replay check.
  async assertJwtClientAuthClaimsAndHeader(ctx, claims) {
    const tokenEndpoint = ctx.oidc.urlFor('token');
    if (claims.aud !== tokenEndpoint) {
      throw new errors.InvalidClientAuth(
        `audience (aud) must be the token endpoint URL ${tokenEndpoint}`,
      );
    }
  },
});

for (const event of ['grant.error', 'registration_create.error', 'server_error']) {
  provider.on(event, (ctx, error) => {
    console.error(JSON.stringify({
      event,
      error: error.error,
      error_detail: error.error_detail ?? error.message,
    }));
  });
}

server.on('request', provider.callback());

process.stdout.write(`issuer=${issuer}\n`);

const stop = () => process.exit(0);
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
process.stdin.on('end', stop);
process.stdin.resume();
