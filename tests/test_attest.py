"""Signed results end to end: keys, a signed run set, and verification that trusts nothing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from deepspark_agent.attest import STATEMENT_FILE, sign_run_set
from deepspark_agent.results import Result
from deepspark_agent.signing import load_private_key


def signed_run(cli, tmp_path: Path) -> tuple[Path, Result]:
    assert cli("keys", "init")[0] == 0
    code, out, err = cli(
        "run", "sleeper", "--runtime", "process", "--mode", "converge", "--runs", "2",
        "--out", str(tmp_path / "runs"), "--json",
    )  # fmt: skip
    assert code == 0 and "signed:" in err
    (run_set,) = (tmp_path / "runs").iterdir()
    return run_set, Result.model_validate_json(out)


def test_keys_init_show_and_refusal_to_overwrite(cli, own_config_dir):
    code, out, _ = cli("keys", "init")
    assert code == 0
    code, shown, _ = cli("keys", "show", "--json")
    key = json.loads(shown)
    assert f"key id {key['key_id']}" in out
    assert (own_config_dir / "deepspark" / "signing-key.pem").stat().st_mode & 0o777 == 0o600
    code, _, err = cli("keys", "init")
    assert code == 1 and "error:" in err and err.count("\n") == 1
    assert json.loads(cli("keys", "show", "--json")[1]) == key  # untouched


def test_a_run_set_is_signed_and_verifies(cli, sleeper, tmp_path):
    run_set, _ = signed_run(cli, tmp_path)
    envelope = json.loads((run_set / STATEMENT_FILE).read_text())
    assert envelope["payloadType"] == "application/vnd.in-toto+json"
    code, out, err = cli("verify", str(run_set / STATEMENT_FILE))
    assert code == 0, err
    assert "verified: signed by" in out and "the figures match their recomputation" in out


def test_a_changed_artifact_fails_verification(cli, sleeper, tmp_path):
    run_set, _ = signed_run(cli, tmp_path)
    mllog = run_set / "run-2" / "mllog.log"
    mllog.write_bytes(mllog.read_bytes().replace(b'"samples_count": 100', b'"samples_count": 900'))
    code, _, err = cli("verify", str(run_set / STATEMENT_FILE))
    assert code == 1 and "run-2/mllog.log" in err and "Traceback" not in err


def test_claimed_figures_that_disagree_with_the_artifacts_are_refused(cli, sleeper, tmp_path):
    run_set, result = signed_run(cli, tmp_path)
    # A signer who inflates the speed signs validly, but the recomputation disagrees.
    claim = result.model_dump(mode="json")
    claim["dimensions"]["speed"]["value"] *= 2
    sign_run_set(run_set, Result.model_validate(claim), load_private_key())
    code, _, err = cli("verify", str(run_set / STATEMENT_FILE))
    assert code == 1 and "claimed figures differ" in err


def test_an_untrusted_key_is_refused(cli, sleeper, tmp_path):
    run_set, _ = signed_run(cli, tmp_path)
    other = tmp_path / "other"
    assert cli("keys", "init", "--dir", str(other))[0] == 0
    code, _, err = cli(
        "verify", str(run_set / STATEMENT_FILE), "--pubkey", str(other / "signing-key.pub.pem")
    )
    assert code == 1 and "error:" in err and err.count("\n") == 1


def test_without_a_key_the_run_says_it_is_unsigned(cli, sleeper, tmp_path):
    code, _, err = cli("run", "sleeper", "--runtime", "process", "--out", str(tmp_path), "--json")
    assert code == 0 and "unsigned: no signing key" in err


def test_an_unsigned_extra_run_fails_verification(cli, sleeper, tmp_path):
    """An extra run-N beside the signed ones would change the recomputed stability."""
    run_set, _ = signed_run(cli, tmp_path)
    shutil.copytree(run_set / "run-2", run_set / "run-3")
    code, _, err = cli("verify", str(run_set / STATEMENT_FILE))
    assert code == 1 and "unsigned files beside the signed artifacts: run-3/" in err
