"""Every command the README and the docs show is one the command line accepts, and runs or is covered.

The convention is docs/development/testing.md's ("Every command in the docs is checked").
"""

from __future__ import annotations

import pytest

from tests.docs.commands import (
    ROOT,
    check_make,
    check_marker,
    check_percept,
    commands_in,
    doc_files,
    make_targets,
    percept_app,
    percept_root,
)

COMMANDS = [c for f in doc_files() for c in commands_in(f)]


@pytest.fixture(scope="module")
def root():
    return percept_root()


def _problems(root, commands) -> list[str]:
    targets = make_targets()
    problems = []
    for cmd in commands:
        check = check_percept(root, cmd.argv) if cmd.argv[0] == "percept" else check_make(targets, cmd.argv)
        for problem in (check, check_marker(cmd)):
            if problem:
                problems.append(f"{cmd.where}: {cmd.text}\n    {problem}")
        if cmd.argv[0] == "make" and not cmd.needs:
            problems.append(
                f"{cmd.where}: {cmd.text}\n    a make target is not run here: give it a needs marker"
            )
    return problems


def test_the_docs_show_the_commands_of_every_task():
    shown = {c.argv[1] for c in COMMANDS if c.argv[0] == "percept"}
    assert {"export", "import-onnx", "repo", "serve", "video", "loadtest", "tune", "world"} <= shown
    assert {"demo", "test"} <= {
        c.argv[1] for c in COMMANDS if c.argv[0] == "make" and c.file.name == "README.md"
    }


def test_every_documented_command_parses_and_names_its_covering_tests(root):
    problems = _problems(root, COMMANDS)
    assert not problems, "commands in the docs that the code does not accept:\n" + "\n".join(problems)


def test_a_renamed_flag_or_command_fails_with_its_file_and_line(root, tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "text\n\n```bash\n"
        "percept video drive.mp4 --out results/ --shards 4\n"  # the flag is --shard-frames
        "percept vidoe drive.mp4 --out results/\n"
        "percept repo build --onnx a.onnx --max-batch-size eight  # needs: gpu (tests/gpu)\n"
        "percept world render --out drive.mp4\n"
        "make bechn   # needs: minutes (tests/percept/test_bench.py)\n"
        "percept serve -r repo   # needs: server (tests/no_such_test.py)\n"
        "```\n\n```text\npercept export NETWORK [--engine onnx|tensorrt]\n```\n"
    )
    commands = commands_in(page)
    assert [c.line for c in commands] == [4, 5, 6, 7, 8, 9]  # the text block is a synopsis, not read
    problems = _problems(root, commands)
    assert len(problems) == 5, problems
    assert f"{page}:4" in problems[0] and "--shards" in problems[0]
    assert f"{page}:5" in problems[1] and "no command 'vidoe'" in problems[1]
    assert f"{page}:6" in problems[2] and "eight" in problems[2]  # a value its type refuses
    assert f"{page}:8" in problems[3] and "bechn" in problems[3]
    assert f"{page}:9" in problems[4] and "no_such_test.py does not exist" in problems[4]


def test_an_included_file_and_a_block_marker_are_read(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        '--8<-- "Makefile"\n\n<!-- needs: server (tests/clients/loadtest/test_loadtest.py) -->\n'
        "```bash\nPERCEPT_ADMIN_KEY=k percept loadtest --model perception \\\n    --streams 4\n```\n"
    )
    (cmd,) = commands_in(page)
    assert cmd.argv == ("percept", "loadtest", "--model", "perception", "--streams", "4")
    assert cmd.needs == ("server",) and cmd.line == 5 and check_marker(cmd) is None


def test_commands_without_a_marker_run_here(tmp_path, monkeypatch):
    """In order, in one empty folder per page, as a reader following that page would run them (in this
    process, through the typer app, to spare an interpreter start per command)."""
    from typer.testing import CliRunner

    app = percept_app()
    runnable = [c for c in COMMANDS if not c.needs and c.argv[0] == "percept"]
    assert len(runnable) >= 5
    done: set[tuple[str, ...]] = set()  # the same command on another page gives the same result
    for cmd in runnable:
        if cmd.argv in done:
            continue
        done.add(cmd.argv)
        folder = tmp_path / str(cmd.file.relative_to(ROOT)).replace("/", "_")
        folder.mkdir(exist_ok=True)
        monkeypatch.chdir(folder)
        r = CliRunner().invoke(app, list(cmd.argv[1:]))
        assert r.exit_code == 0, (
            f"{cmd.where}: {cmd.text} exited {r.exit_code}\n{r.output[-2000:]}\n{r.exception!r}"
        )
    assert (tmp_path / "README.md" / "drive.mp4").stat().st_size > 10_000
    assert (tmp_path / "docs_models.md" / "scene.png").is_file()
