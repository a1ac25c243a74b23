"""`deepspark-agent keys ...` and `verify`: the signing key, and checking a signed result."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from deepspark_agent.console import JsonOpt, console, user_errors
from deepspark_core.attest import verify_run_set
from deepspark_core.signing import (
    PUBLIC_KEY_NAME,
    default_key_dir,
    init_keys,
    key_id,
    load_public_key,
)

keys_app = typer.Typer(
    help="The Ed25519 key that signs this agent's results.", no_args_is_help=True
)

KeyDirOpt = Annotated[
    Path | None, typer.Option("--dir", help="Key directory (default: ~/.config/deepspark).")
]


@keys_app.command("init")
@user_errors
def keys_init(
    key_dir: KeyDirOpt = None,
    force: Annotated[bool, typer.Option(help="Replace an existing key.")] = False,
) -> None:
    """Create the signing key (PEM, private file mode 0600); never overwrites without --force."""
    info = init_keys(key_dir, force)
    console.print(f"key id {info.key_id}\nprivate {info.private_path}\npublic {info.public_path}")


@keys_app.command("show")
@user_errors
def keys_show(key_dir: KeyDirOpt = None, as_json: JsonOpt = False) -> None:
    """The public key and its id (sha256 of the raw public key): what a collector registers."""
    path = (key_dir or default_key_dir()) / PUBLIC_KEY_NAME
    public = load_public_key(path)
    if as_json:
        print(json.dumps({"key_id": key_id(public), "public_key_pem": path.read_text()}))
    else:
        console.print(f"key id {key_id(public)}\n{path.read_text().rstrip()}", highlight=False)


@user_errors
def verify(
    envelope: Annotated[Path, typer.Argument(help="A run set's statement.dsse.json.")],
    pubkey: Annotated[
        list[Path] | None,
        typer.Option(help="Trusted public key (PEM); repeatable. Default: this host's own."),
    ] = None,
) -> None:
    """Check a signed result: signature, every artifact's digest, and the recomputed result."""
    keys = [load_public_key(p) for p in pubkey or [default_key_dir() / PUBLIC_KEY_NAME]]
    verified = verify_run_set(envelope, keys)
    console.print(
        f"verified: signed by {', '.join(verified.key_ids)}, {verified.artifacts} artifacts "
        "match their digests, the whole result matches its recomputation",
        highlight=False,
    )
