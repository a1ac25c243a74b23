"""Signed results end to end: keys, a signed run set, and verification that trusts nothing."""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path
from typing import Any

from deepspark_core.attest import STATEMENT_FILE, first_difference, predicate, sign_run_set
from deepspark_core.results import Result
from deepspark_core.runset import raw_files
from deepspark_core.signing import (
    key_id,
    load_private_key,
    make_statement,
    sign_envelope,
    subjects_under,
)


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


def test_a_run_set_is_signed_and_verifies(cli, run_set):
    envelope = json.loads((run_set / STATEMENT_FILE).read_text())
    assert envelope["payloadType"] == "application/vnd.in-toto+json"
    code, out, err = cli("verify", str(run_set / STATEMENT_FILE))
    assert code == 0, err
    assert "verified: signed by" in out and "the whole result matches its recomputation" in out


def test_a_changed_artifact_fails_verification(cli, run_set):
    mllog = run_set / "run-2" / "mllog.log"
    mllog.write_bytes(mllog.read_bytes().replace(b'"samples_count": 100', b'"samples_count": 900'))
    code, _, err = cli("verify", str(run_set / STATEMENT_FILE))
    assert code == 1 and "run-2/mllog.log" in err and "Traceback" not in err


def test_claimed_figures_that_disagree_with_the_artifacts_are_refused(cli, signed):
    run_set, result = signed
    # A signer who inflates the speed signs validly, but the recomputation disagrees.
    claim = result.model_dump(mode="json")
    claim["dimensions"]["speed"]["value"] *= 2
    sign_run_set(run_set, Result.model_validate(claim), load_private_key())
    code, _, err = cli("verify", str(run_set / STATEMENT_FILE))
    assert code == 1 and "differs from its recomputation at result.runs[0]" not in err
    assert "the predicate differs from its recomputation at result.dimensions.speed.value" in err


def test_an_untrusted_key_is_refused(cli, run_set, tmp_path):
    other = tmp_path / "other"
    assert cli("keys", "init", "--dir", str(other))[0] == 0
    code, _, err = cli(
        "verify", str(run_set / STATEMENT_FILE), "--pubkey", str(other / "signing-key.pub.pem")
    )
    assert code == 1 and "error:" in err and err.count("\n") == 1


def test_without_a_key_the_run_says_it_is_unsigned(cli, sleeper, tmp_path):
    code, _, err = cli("run", "sleeper", "--runtime", "process", "--out", str(tmp_path), "--json")
    assert code == 0 and "unsigned: no signing key" in err


def test_an_unsigned_extra_run_fails_verification(cli, run_set):
    """An extra run-N beside the signed ones would change the recomputed stability."""
    shutil.copytree(run_set / "run-2", run_set / "run-3")
    code, _, err = cli("verify", str(run_set / STATEMENT_FILE))
    assert code == 1 and "unsigned files beside the signed artifacts: run-3/" in err


def _times_ten(values: list[float]) -> list[float]:
    return [v * 10 for v in values]


# Issue 14, item 3: a predicate changed anywhere, re-signed with the right key, and where
# verification must say it differs. None of these is one of the six figures.
ALTERED: dict[str, tuple[Any, str]] = {
    "per-run speeds x10": (
        lambda r: r["runs"][0]["speed"].update(
            per_window=_times_ten(r["runs"][0]["speed"]["per_window"])
        ),
        "result.runs[0].speed.per_window[0]",
    ),
    "notes": (lambda r: r["notes"].insert(0, "all good"), "result.notes[0]"),
    "framework": (lambda r: r["plan"].update(framework="pytorch"), "result.plan.framework"),
    "run framework": (lambda r: r["runs"][1].update(framework="jax"), "result.runs[1].framework"),
    "config": (lambda r: r["plan"].update(config="full"), "result.plan.config"),
    "batch size": (lambda r: r["plan"].update(batch_size=4096), "result.plan.batch_size"),
    "system description": (
        lambda r: r["plan"]["system"]["host"].update(cpu_model="Imaginary 9000"),
        "result.plan.system.host.cpu_model",
    ),
    "quality target": (
        lambda r: r["plan"]["quality"].update(target=0.01),
        "result.plan.quality.target",
    ),
}


def test_any_altered_predicate_field_is_refused_by_verify(cli, signed):
    run_set, result = signed
    key = load_private_key()
    for case, (alter, where) in ALTERED.items():
        claim = result.model_dump(mode="json")
        alter(claim)
        sign_run_set(run_set, Result.model_validate(claim), key)
        code, _, err = cli("verify", str(run_set / STATEMENT_FILE))
        assert code == 1, case
        assert f"the predicate differs from its recomputation at {where}\n" in err, (case, err)
        assert err.count("\n") == 1 and "Traceback" not in err
    sign_run_set(run_set, result, key)  # the true result verifies again
    assert cli("verify", str(run_set / STATEMENT_FILE))[0] == 0


def test_only_raw_artifacts_are_signed(cli, run_set):
    envelope = json.loads((run_set / STATEMENT_FILE).read_text())
    names = {s["name"] for s in json.loads(base64.b64decode(envelope["payload"]))["subject"]}
    assert names == {p.relative_to(run_set).as_posix() for p in raw_files(run_set)}
    assert "plan.json" in names and "run-1/mllog.log" in names and "run-2/run.json" in names
    for unsigned in ("report.html", "report.md", "result.json", "agent.log"):
        assert (run_set / unsigned).is_file() and unsigned not in names
    assert (run_set / "run-1" / "process-group.json").is_file()
    assert "run-1/process-group.json" not in names
    # A new report template, or a resumed agent's log lines, leave the signature intact.
    (run_set / "report.html").write_text("<p>another template</p>")
    (run_set / "agent.log").write_text("more lines\n")
    assert cli("verify", str(run_set / STATEMENT_FILE))[0] == 0
    # Whatever else a workload writes into its run directory is raw: unsigned, it is refused.
    (run_set / "run-1" / "extra.txt").write_text("x")
    code, _, err = cli("verify", str(run_set / STATEMENT_FILE))
    assert code == 1 and "unsigned files beside the signed artifacts: run-1/extra.txt" in err


def sign_as_older_agents_did(run_set: Path, result: Result) -> None:
    """Older agents signed every file but result.json and report.md: report.html and their
    bookkeeping too."""
    skipped = {run_set / name for name in ("result.json", "report.md", STATEMENT_FILE)}
    files = sorted(p for p in run_set.rglob("*") if p.is_file() and p not in skipped)
    statement = make_statement(subjects_under(run_set, files), predicate(result))
    envelope = sign_envelope(statement, load_private_key())
    (run_set / STATEMENT_FILE).write_text(json.dumps(envelope, indent=2) + "\n")


def test_an_older_signed_run_set_still_verifies(cli, signed):
    run_set, result = signed
    sign_as_older_agents_did(run_set, result)
    payload = json.loads(
        base64.b64decode(json.loads((run_set / STATEMENT_FILE).read_text())["payload"])
    )
    assert "report.html" in {s["name"] for s in payload["subject"]}
    (run_set / "report.html").write_text("<p>regenerated with a new template</p>")
    code, out, err = cli("verify", str(run_set / STATEMENT_FILE))
    assert code == 0, err
    assert "10 artifacts match their digests" in out  # the raw ones, idle.jsonl among them


def test_a_predicate_without_fields_added_later_verifies_while_they_hold_defaults(cli, signed):
    """An older agent's predicate lacks the fields added since (state, speed_na): it verifies
    as long as their recomputed values are the defaults; a figure it lacks does not."""
    run_set, result = signed
    key = load_private_key()
    older = predicate(result)
    del older["result"]["state"]
    for run in older["result"]["runs"]:
        del run["speed_na"]
    statement = make_statement(subjects_under(run_set, raw_files(run_set)), older)
    (run_set / STATEMENT_FILE).write_text(json.dumps(sign_envelope(statement, key)))
    code, _, err = cli("verify", str(run_set / STATEMENT_FILE))
    assert code == 0, err
    del older["result"]["dimensions"]["speed"]
    statement = make_statement(subjects_under(run_set, raw_files(run_set)), older)
    (run_set / STATEMENT_FILE).write_text(json.dumps(sign_envelope(statement, key)))
    code, _, err = cli("verify", str(run_set / STATEMENT_FILE))
    assert code == 1 and "recomputation at result.dimensions.speed" in err


def test_verify_names_the_key_that_verified_and_refuses_a_forged_signature(cli, run_set, tmp_path):
    """Issue 14, item 1, at home: a garbage signature under vendor A's key id listed first,
    then this host's (vendor B's) valid one."""
    vendor_a = tmp_path / "vendor-a"
    assert cli("keys", "init", "--dir", str(vendor_a))[0] == 0
    a_id = json.loads(cli("keys", "show", "--dir", str(vendor_a), "--json")[1])["key_id"]
    path = run_set / STATEMENT_FILE
    envelope = json.loads(path.read_text())
    envelope["signatures"].insert(0, {"keyid": a_id, "sig": base64.b64encode(bytes(64)).decode()})
    path.write_text(json.dumps(envelope))
    b_pub = tmp_path / "config-b.pem"
    b_pub.write_text(json.loads(cli("keys", "show", "--json")[1])["public_key_pem"])
    b_id = key_id(load_private_key().public_key())

    code, out, err = cli("verify", str(path), "--pubkey", str(b_pub))
    assert code == 0, err
    assert f"verified: signed by {b_id}," in out and a_id not in out
    a_pub = vendor_a / "signing-key.pub.pem"
    code, _, err = cli("verify", str(path), "--pubkey", str(a_pub), "--pubkey", str(b_pub))
    assert code == 1 and f"signature by {a_id} does not verify" in err and err.count("\n") == 1
    code, _, err = cli("verify", str(path), "--pubkey", str(a_pub))
    assert code == 1 and "does not verify" in err


def test_first_difference_names_the_path():
    assert first_difference({"a": [1, {"b": 2}]}, {"a": [1, {"b": 2}]}) is None
    assert first_difference({"a": [1, {"b": 3}]}, {"a": [1, {"b": 2}]}) == "a[1].b"
    assert first_difference({"a": [1]}, {"a": [1, 2]}) == "a[1]"
    assert first_difference({"a": 1, "z": None}, {"a": 1}) == "z"
    assert first_difference({"a": True}, {"a": 1}) == "a"  # types too
    assert first_difference({"a": 1}, {"a": 1.0}) == "a"
    # A key the claim lacks is no difference only where its value is a default (absent in lean).
    assert first_difference({"a": 1}, {"a": 1, "new": None}, {"a": 1}) is None
    assert first_difference({"a": 1}, {"a": 1, "new": 2}, {"a": 1, "new": 2}) == "new"
    assert first_difference({"r": [{}]}, {"r": [{"x": 0}]}, {"r": [{}]}) is None
    assert first_difference({"r": [{}]}, {"r": [{"x": 5}]}, {"r": [{"x": 5}]}) == "r[0].x"
