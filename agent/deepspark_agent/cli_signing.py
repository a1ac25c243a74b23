"""`deepspark-agent keys ...` and `verify`: the signing key, and checking a signed result."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from deepspark_agent.console import JsonOpt, console, user_errors
from deepspark_core.attest import sign_run_set, verify_run_set
from deepspark_core.results import Result
from deepspark_core.signing import (
    PRIVATE_KEY_NAME,
    PUBLIC_KEY_NAME,
    default_key_dir,
    init_keys,
    key_id,
    load_private_key,
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


def ensure_key(out: Console) -> None:
    """`up` signs what it measures: on its first use on a host it creates the host's key."""
    if (default_key_dir() / PRIVATE_KEY_NAME).exists():
        return
    info = init_keys()
    out.print(
        f"signing key created: id {info.key_id}, public key {info.public_path} "
        "(a collector registers it: `deepspark-agent keys show`)",
        highlight=False,
    )


def sign_if_keyed(run_set: Path, result: Result, out: Console) -> None:
    """Sign the run set when this host has a key; say in one line what happened."""
    key_dir = default_key_dir()
    if not (key_dir / PRIVATE_KEY_NAME).exists():
        out.print("unsigned: no signing key (`deepspark-agent keys init` creates one)")
        return
    envelope = sign_run_set(run_set, result, load_private_key(key_dir))
    out.print(f"signed: {envelope}", highlight=False)


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
