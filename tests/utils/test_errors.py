"""The error helpers: the flag that gave a file is named, an empty input is refused."""

from __future__ import annotations

import pytest

from dpr.data.records import DataFormatError
from dpr.utils.errors import InputError, UsageError, naming_flag, read_input, require_items


def test_naming_flag_prefixes_input_errors_and_keeps_their_class() -> None:
    # Given a reader error that names the file only
    with pytest.raises(DataFormatError) as caught, naming_flag("--qa"):
        raise DataFormatError("qas.tsv:3: expected question<TAB>answers")
    # Then the flag comes first, the class is unchanged
    assert str(caught.value) == "--qa qas.tsv:3: expected question<TAB>answers"


def test_naming_flag_leaves_messages_that_name_a_flag_and_other_errors() -> None:
    with pytest.raises(InputError, match=r"^--train_files_upsample_rates has 2"), \
            naming_flag("--train_file"):
        raise InputError("--train_files_upsample_rates has 2 rates")
    with pytest.raises(UsageError, match=r"^bad value$"), naming_flag("--qa"):
        raise UsageError("bad value")  # not an input error: untouched
    with pytest.raises(KeyError), naming_flag("--qa"):
        raise KeyError("bug")


def test_require_items_refuses_nothing_and_accepts_something() -> None:
    with pytest.raises(InputError, match=r"^p\.tsv: no passages \(is the file empty\?\)$"):
        require_items([], path="p.tsv", what="passages")
    require_items(["one"], path="p.tsv", what="passages")


def test_read_input_returns_what_was_read_and_names_the_flag_of_an_empty_file() -> None:
    assert read_input(lambda path: [path], "q.tsv", flag="--qa", what="questions") == ["q.tsv"]
    with pytest.raises(InputError, match=r"^--qa q\.tsv: no questions \(is the file empty\?\)$"):
        read_input(lambda path: [], "q.tsv", flag="--qa", what="questions")
