"""bench/record.py: the one header of every benchmark result, and the one way each bench script writes it.

The module is loaded from its path (bench/ is no package); the bench scripts are only parsed (`ast`), never run.
"""

import ast
import datetime
import importlib.util
import json
import re
from pathlib import Path

import pytest

import fmnist

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
SCRIPTS = sorted(BENCH.glob("bench_*.py"))


@pytest.fixture(scope="module")
def record():
    spec = importlib.util.spec_from_file_location("bench_record", BENCH / "record.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_header_has_every_field_with_its_type(record):
    head = record.header()
    assert list(head) == list(record.FIELDS)
    date = datetime.datetime.fromisoformat(head["date"])
    assert date.utcoffset() is not None
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d", head["date"])
    assert abs((datetime.datetime.now(datetime.UTC) - date).total_seconds()) < 60
    assert isinstance(head["cpu"], str) and head["cpu"]
    for key in ("cpu_family", "cpu_model"):
        assert head[key] is None or (isinstance(head[key], int) and not isinstance(head[key], bool))
    assert isinstance(head["cpu_flags"], list) and set(head["cpu_flags"]) <= set(record.SPEED_FLAGS)
    assert isinstance(head["cores"], int) and head["cores"] >= 1
    assert head["torch"] is None or isinstance(head["torch"], str)
    assert head["fmnist"] == fmnist.__version__
    assert (head["commit"] is None) == (head["dirty"] is None)
    if head["commit"] is not None:
        assert re.fullmatch(r"[0-9a-f]{40}", head["commit"]) and isinstance(head["dirty"], bool)
    json.dumps(head)  # plain JSON values only


def test_cpuinfo_fields_are_read_from_the_first_processor(record, tmp_path):
    info = tmp_path / "cpuinfo"
    first = "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 17\nmodel name\t: AMD EPYC\n"
    info.write_text(first + "flags\t\t: fpu avx2 avx512f avx512_bf16\n\nprocessor\t: 1\nmodel\t\t: 99\n")
    fields = record.cpuinfo(info)
    assert (fields["cpu family"], fields["model"], fields["model name"]) == ("25", "17", "AMD EPYC")
    assert record.cpuinfo(tmp_path / "absent") == {}


def test_commit_is_none_outside_a_repository_or_without_git(record, tmp_path, monkeypatch):
    assert record.commit(tmp_path) == (None, None)
    monkeypatch.setenv("PATH", str(tmp_path))  # no git to be found
    assert record.commit() == (None, None)
    head = record.header()
    assert head["commit"] is None and head["dirty"] is None


def test_title_is_one_line_naming_date_machine_and_commit(record):
    head = record.header() | {"cpu": "AMD EPYC", "cpu_family": 25, "cpu_model": 17, "cores": 2, "torch": "2.13.0"}
    head |= {"commit": "abc1234" + "0" * 33, "dirty": False}
    line = record.title("TEXT", head)
    assert line == f"TEXT — {head['date']} — AMD EPYC (family 25 model 17), 2 cores, torch 2.13.0, commit abc1234"
    bare = head | {"cpu_family": None, "cpu_model": None, "torch": None, "commit": None, "dirty": None}
    assert record.title("TEXT", bare) == f"TEXT — {head['date']} — AMD EPYC, 2 cores"


def test_save_writes_the_header_first_to_an_explicit_path(record, tmp_path, capsys):
    out = tmp_path / "deeper" / "x.json"
    doc = {"benchmark": "x", "results": {"a": 1.5}, "name": "é"}
    written = record.save("x", doc, out)
    assert written == out
    text = out.read_text(encoding="utf-8")
    assert text.endswith("}\n") and text.startswith('{\n  "header": {')
    saved = json.loads(text)
    assert list(saved) == ["header", *doc] and saved["header"]["fmnist"] == fmnist.__version__
    assert {k: saved[k] for k in doc} == doc
    assert str(out) in capsys.readouterr().err
    assert sorted(p.name for p in out.parent.iterdir()) == ["x.json"]  # no temporary file left beside it


def test_save_is_atomic_a_failed_write_leaves_the_old_file(record, tmp_path):
    out = tmp_path / "x.json"
    out.write_text("old\n")
    with pytest.raises(TypeError):
        record.save("x", {"results": object()}, out)
    assert out.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.json"]


def test_save_defaults_to_the_results_folder_by_name_and_date(record, tmp_path, monkeypatch):
    monkeypatch.setattr(record, "RESULTS", tmp_path / "results")
    head = record.header()
    written = record.save("cnn-speed", {"seed": 0}, head=head)
    assert written == tmp_path / "results" / f"cnn-speed-{head['date'][:10]}.json"
    assert json.loads(written.read_text())["header"] == head


def test_save_refuses_a_document_with_its_own_header(record, tmp_path):
    with pytest.raises(ValueError):
        record.save("x", {"header": {}}, tmp_path / "x.json")
    assert not (tmp_path / "x.json").exists()


def _calls(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            yield node.func


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_bench_scripts_take_their_header_from_record(script):
    """No script dates its results itself (time.strftime, datetime's strftime or isoformat), and each writes its
    JSON through record.save: so the headers cannot drift apart again."""
    tree = ast.parse(script.read_text(encoding="utf-8"))
    dating = [f"line {f.lineno}: .{f.attr}()" for f in _calls(tree) if f.attr in ("strftime", "isoformat")]
    assert not dating, f"{script.name} dates its results itself: {dating}"
    saves = [f for f in _calls(tree) if f.attr == "save" and isinstance(f.value, ast.Name) and f.value.id == "record"]
    assert saves, f"{script.name} does not write its JSON with record.save"


def test_every_bench_script_is_checked():
    assert len(SCRIPTS) >= 15
