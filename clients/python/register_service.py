#!/usr/bin/env python3
"""Register a service with the registrar and get an access token for it.

The program walks through the calls a Python service makes:

1. RegisterService creates the service app (or finds the existing one) with
   a key that the registrar generates and holds, and grants one scope.
2. GrantScopes grants a second scope.
3. GetAccessToken gets a token with both scopes.
4. WatchRotations returns the app's key state, and the program prints the
   first message.

It exits with status 1 and a message on standard error when a call fails.
The access token is a secret, so only its length and first characters are
printed.

Run it with the stubs that generate.sh writes into generated/:

    python register_service.py 127.0.0.1:50051 [--token-file FILE]

Against a registrar that authenticates callers by bearer token, --token-file
names a file that contains the token; every call then sends it as
`authorization: Bearer <token>`.
"""

import argparse
import sys
from pathlib import Path

GENERATED = Path(__file__).resolve().parent / "generated"
sys.path.insert(0, str(GENERATED))

try:
    import grpc
    from registrar.v1 import registrar_pb2, registrar_pb2_grpc
except ImportError as error:
    sys.exit(
        f"error: cannot import grpcio or the generated stubs ({error}); "
        "run scripts/install-test-tools.sh, which installs grpcio-tools into "
        f".venv and writes the stubs into {GENERATED}"
    )

REGISTERED_SCOPE = "okta.users.read"
GRANTED_SCOPE = "okta.apps.read"
# Seconds each unary call may take. Creating an app calls Okta several times.
CALL_TIMEOUT = 60
# Characters of the access token that are printed.
TOKEN_PREFIX_LENGTH = 8

FAILED = registrar_pb2.SCOPE_OUTCOME_FAILED


class ExampleError(Exception):
    """A failed step of the example; the message names the step and the reason."""


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("address", help="the registrar's gRPC address, such as 127.0.0.1:50051")
    parser.add_argument(
        "--service-name",
        default="python-example",
        help="the service name, which becomes the app's name in Okta (default: %(default)s)",
    )
    parser.add_argument(
        "--token-file",
        help="a file that contains the bearer token to send with every call",
    )
    args = parser.parse_args()

    try:
        metadata = bearer_metadata(args.token_file)
        with grpc.insecure_channel(args.address) as channel:
            if metadata:
                channel = grpc.intercept_channel(channel, BearerToken(metadata))
            run(registrar_pb2_grpc.RegistrarStub(channel), args.service_name)
    except grpc.RpcError as error:
        sys.exit(f"error: {describe(error)}")
    except ExampleError as error:
        sys.exit(f"error: {error}")


def bearer_metadata(token_file):
    """Return the authorization metadata for the token in token_file, or None."""
    if token_file is None:
        return None
    try:
        token = Path(token_file).read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as error:
        raise ExampleError(f"cannot read the bearer token from {token_file}: {error}") from None
    if not token or any(ch.isspace() for ch in token):
        raise ExampleError(f"{token_file} must contain one bearer token without spaces")
    return (("authorization", f"Bearer {token}"),)


class BearerToken(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):
    """Add the bearer token to the metadata of every call."""

    def __init__(self, metadata):
        self._metadata = metadata

    def _with_token(self, details):
        return details._replace(metadata=tuple(details.metadata or ()) + self._metadata)

    def intercept_unary_unary(self, continuation, client_call_details, request):
        return continuation(self._with_token(client_call_details), request)

    def intercept_unary_stream(self, continuation, client_call_details, request):
        return continuation(self._with_token(client_call_details), request)


def run(stub, service_name):
    """Make the four calls and print what each returned."""
    registered = call(
        "RegisterService",
        stub.RegisterService,
        registrar_pb2.RegisterServiceRequest(
            service_name=service_name,
            scope_ids=[REGISTERED_SCOPE],
            key=registrar_pb2.GenerateKey(algorithm=registrar_pb2.KEY_ALGORITHM_ES256),
        ),
    )
    client_id = registered.app.client_id
    check_scopes("RegisterService", registered.grants)
    print(
        f"RegisterService: client_id={client_id} created={str(registered.created).lower()} "
        f"grants={format_scopes(registered.grants)}"
    )

    granted = call(
        "GrantScopes",
        stub.GrantScopes,
        registrar_pb2.GrantScopesRequest(client_id=client_id, scope_ids=[GRANTED_SCOPE]),
    )
    check_scopes("GrantScopes", granted.results)
    print(f"GrantScopes: client_id={client_id} grants={format_scopes(granted.results)}")

    token = call(
        "GetAccessToken",
        stub.GetAccessToken,
        registrar_pb2.GetAccessTokenRequest(
            client_id=client_id, scopes=[REGISTERED_SCOPE, GRANTED_SCOPE]
        ),
    )
    print(
        f"GetAccessToken: token_type={token.token_type} scopes={','.join(token.scopes)} "
        f"expires_at={token.expires_at.ToJsonString()} length={len(token.access_token)} "
        f"prefix={token.access_token[:TOKEN_PREFIX_LENGTH]}..."
    )

    print_first_rotation_state(stub, client_id)


def print_first_rotation_state(stub, client_id):
    """Open WatchRotations, print its first message and close the stream."""
    stream = stub.WatchRotations(
        registrar_pb2.WatchRotationsRequest(client_ids=[client_id]), timeout=CALL_TIMEOUT
    )
    try:
        first = next(stream)
    except StopIteration:
        raise ExampleError("WatchRotations ended before its first message") from None
    except grpc.RpcError as error:
        raise ExampleError(f"WatchRotations failed: {describe(error)}") from None
    finally:
        stream.cancel()

    if not first.apps:
        raise ExampleError("WatchRotations sent a message without apps")
    for app in first.apps:
        print(
            f"WatchRotations: client_id={app.client_id} revision={app.revision} "
            f"signing_kid={app.signing_kid} "
            f"phase={registrar_pb2.RotationPhase.Name(app.phase)}"
        )


def call(name, method, request):
    """Call a unary RPC, naming the RPC when it fails."""
    try:
        return method(request, timeout=CALL_TIMEOUT)
    except grpc.RpcError as error:
        raise ExampleError(f"{name} failed: {describe(error)}") from None


def check_scopes(name, results):
    """Raise when the registrar reports a scope that Okta did not grant."""
    failed = [
        f"{result.scope_id} ({result.error})" for result in results if result.outcome == FAILED
    ]
    if failed:
        raise ExampleError(f"{name} could not grant {', '.join(failed)}")


def format_scopes(results):
    """Format scope results as scope:OUTCOME pairs."""
    return ",".join(
        f"{result.scope_id}:{registrar_pb2.ScopeOutcome.Name(result.outcome)}"
        for result in results
    )


def describe(error):
    """Format a gRPC error as its status code and message."""
    return f"{error.code().name}: {error.details()}"


if __name__ == "__main__":
    main()
