"""One TRL format per chat view (`views.<view>.format`): what each format writes, how files of each format read back,
convert when carried, and how readers refuse what they cannot read (pytest -k format)."""

import polars as pl
import pyarrow.parquet as pq
import pytest

from cotforge.schemas.config_views import (
    CalibrationViewConfig,
    PreferenceViewConfig,
    RlvrViewConfig,
    SftViewConfig,
    UnpairedViewConfig,
)
from cotforge.schemas.recipe import RecipeError, parse_recipe
from cotforge.schemas.views import FORMATS, VIEWS, SchemaMismatch, check_and_migrate
from cotforge.tasks.publish.card import format_lines
from cotforge.tasks.publish.snapshot import carried_views
from cotforge.tasks.publish.write import PublishedView, read_view, write_view
from cotforge.tasks.views.builders import (
    build_calibration,
    build_preference,
    build_rlvr,
    build_sft,
    build_unpaired,
    view_metadata,
)
from cotforge.tasks.views.formats import convert_row
from tests.views_support import simulated_joined

SYSTEM = "Think step by step."


@pytest.fixture(scope="module")
def joined():
    return simulated_joined(n=10, difficulty=2, samples=4, seed=21)[0]


def _rows(table):
    return pl.from_arrow(table).to_dicts()


def test_sft_default_is_conversational_prompt_completion(joined):
    assert SftViewConfig().format == "conversational" and VIEWS["sft"].default_format == "conversational"
    rows = _rows(build_sft(joined, SftViewConfig(), SYSTEM))
    assert rows and "messages" not in rows[0]
    assert [m["role"] for m in rows[0]["prompt"]] == ["system", "user"]
    assert [m["role"] for m in rows[0]["completion"]] == ["assistant"]


def test_sft_messages_format_is_the_whole_chat_in_one_column(joined):
    conversational = _rows(build_sft(joined, SftViewConfig(), SYSTEM))
    table = build_sft(joined, SftViewConfig(format="messages"), SYSTEM)
    assert table.schema.names[0] == "messages" and {"prompt", "completion"}.isdisjoint(table.schema.names)
    rows = _rows(table)
    assert [r["messages"] for r in rows] == [c["prompt"] + c["completion"] for c in conversational]
    assert [{k: v for k, v in r.items() if k != "messages"} for r in rows] == \
        [{k: v for k, v in c.items() if k not in ("prompt", "completion")} for c in conversational]


@pytest.mark.parametrize("build, config, columns", [
    (build_sft, SftViewConfig(format="standard"), ("prompt", "completion")),
    (build_preference, PreferenceViewConfig(format="standard"), ("prompt", "chosen", "rejected")),
    (build_unpaired, UnpairedViewConfig(format="standard"), ("prompt", "completion")),
    (build_rlvr, RlvrViewConfig(format="standard"), ("prompt",)),
    (build_calibration, CalibrationViewConfig(format="standard"), ("prompt", "completion")),
], ids=["sft", "preference", "unpaired", "rlvr", "calibration"])
def test_standard_format_is_plain_strings(joined, build, config, columns):
    conversational = _rows(build(joined, config.model_copy(update={"format": "conversational"}), SYSTEM))
    rows = _rows(build(joined, config, SYSTEM))
    assert rows and len(rows) == len(conversational)
    for row, chat in zip(rows, conversational):
        assert all(isinstance(row[c], str) for c in columns)
        question = chat["prompt"][-1]["content"]
        assert row["prompt"] == f"{SYSTEM}\n\n{question}\n"  # no chat template: the text a base model continues
        for column in columns[1:]:
            assert row[column] == chat[column][0]["content"]  # the assistant's own words, unchanged


def test_each_format_is_one_trl_format(joined):
    """TRL's own format detection agrees, and no row carries two formats (the KeyError the issue reported)."""
    from trl.data_utils import is_conversational, maybe_apply_chat_template

    class Template:  # the chat template is not needed to see which keys TRL accepts: a stand-in renders the turns
        def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=False, **_):
            return "".join(f"<{m['role']}>{m['content']}" for m in messages) + ("<assistant>" * add_generation_prompt)

    for format_, expect_chat in (("conversational", True), ("messages", True), ("standard", False)):
        row = _rows(build_sft(joined, SftViewConfig(format=format_), SYSTEM))[0]
        trl_keys = {k: v for k, v in row.items() if k in ("messages", "prompt", "completion")}
        assert is_conversational(trl_keys) is expect_chat, format_
        if expect_chat:
            rendered = maybe_apply_chat_template(trl_keys, Template())
            assert set(rendered) == ({"text"} if format_ == "messages" else {"prompt", "completion"})


def test_recipe_chooses_the_format_and_refuses_a_format_a_view_has_none_of():
    recipe = {"name": "f", "questions": {"sources": [{"kind": "family", "family": "arithmetic", "n": 2}]},
              "generation": {"backend": "simulated"}}
    parsed = parse_recipe({**recipe, "views": {"sft": {"format": "messages"}, "preference": {"format": "standard"}}})
    assert parsed.views.sft.format == "messages" and parsed.views.preference.format == "standard"
    assert parsed.views.unpaired.format == "conversational"
    with pytest.raises(RecipeError, match="format"):
        parse_recipe({**recipe, "views": {"preference": {"format": "messages"}}})  # DPO has no messages format


def _publish(folder, view, table, format_):
    """One view written as a version folder: its Parquet files and a card header declaring the config."""
    published = write_view(str(folder), view, table, view_metadata(view, "rh", "bid", "0.1.0", format_))
    (folder / "README.md").write_text(f"---\nconfigs:\n- config_name: {view}\n---\n")
    return published


def test_files_name_their_format_and_read_back_in_it(joined, tmp_path):
    for format_ in VIEWS["sft"].formats:
        folder = tmp_path / format_
        published = _publish(folder, "sft", build_sft(joined, SftViewConfig(format=format_), SYSTEM), format_)
        assert published.format == format_
        meta = pq.read_schema(folder / "sft" / "train-00000.parquet").metadata
        assert meta[b"cotforge.format"] == format_.encode()
        assert read_view(str(folder), "sft").columns == VIEWS["sft"].arrow_for(format_).names


def test_carried_rows_take_the_recipes_format_where_they_can(joined, tmp_path):
    conversational = build_sft(joined, SftViewConfig(), SYSTEM, added_in="0.1.0")
    _publish(tmp_path / "chat", "sft", conversational, "conversational")
    (table, format_), = carried_views(str(tmp_path / "chat"), {"sft": "messages"}).values()
    assert format_ == "messages" and table.num_rows == conversational.num_rows
    assert table.column("messages").to_pylist() == [p + c for p, c in zip(conversational.column("prompt").to_pylist(),
                                                                          conversational.column("completion")
                                                                          .to_pylist())]
    # messages -> conversational: the split at the trailing assistant turns gives the rows back.
    back = [convert_row(r, "messages", "conversational") for r in table.to_pylist()]
    assert back == conversational.to_pylist()
    _publish(tmp_path / "plain", "sft", build_sft(joined, SftViewConfig(format="standard"), SYSTEM), "standard")
    with pytest.raises(SchemaMismatch, match="standard.*cannot be turned into 'messages'"):
        carried_views(str(tmp_path / "plain"), {"sft": "messages"})


def test_a_reader_that_assumes_the_conversational_format_refuses_other_formats(joined, tmp_path):
    """What a reader from before formats does (it reads no `cotforge.format`): a standard or messages file is refused
    with a SchemaMismatch, never misread as conversational rows."""
    for format_ in ("standard", "messages"):
        frame = pl.from_arrow(build_sft(joined, SftViewConfig(format=format_), SYSTEM))
        with pytest.raises(SchemaMismatch):
            check_and_migrate(frame, "sft", "2.1.0")
        assert check_and_migrate(frame, "sft", "2.1.0", format_=format_).height == frame.height
    with pytest.raises(SchemaMismatch, match="reads preference as"):
        check_and_migrate(pl.DataFrame(), "preference", "1.2.0", format_="messages")


def test_card_says_the_format_and_the_loss_it_implies():
    views = [PublishedView("sft", "2.1.0", 3, (), format="messages"),
             PublishedView("preference", "1.2.0", 2, (), format="conversational"),
             PublishedView("prm", "1.2.0", 2, (), format="standard")]
    text = format_lines(views)
    assert "`sft`: **messages**" in text and "whole conversation" in text and "assistant_only_loss" in text
    assert "`preference`: **conversational**" in text and "completion only" in text
    assert "`prm`" in text and "stepwise supervision" in text
    assert set(FORMATS) == {"conversational", "messages", "standard"}
