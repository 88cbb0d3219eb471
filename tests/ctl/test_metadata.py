"""label/annotate arguments and the patch they make."""
import pytest

from ctl.discovery import UsageError
from ctl.metadata import metadata_patch, outcome, parse_changes


def test_arguments_split_into_targets_sets_and_removals():
    assert parse_changes(["pods", "web", "app=web", "example.com/tier=", "old-"]) == (
        ["pods", "web"], {"app": "web", "example.com/tier": ""}, ["old"])
    with pytest.raises(UsageError, match="can not both modify and remove"):
        parse_changes(["po/x", "a=1", "a-"])
    with pytest.raises(UsageError, match="invalid label spec"):
        parse_changes(["po/x", "bad key=1"])


def test_overwrite_is_needed_to_change_a_value():
    with pytest.raises(UsageError, match=r"'app' already has a value \(web\), and --overwrite is false"):
        metadata_patch({"app": "web"}, {"app": "db"}, [], overwrite=False, what="label")
    assert metadata_patch({"app": "web"}, {"app": "db"}, [], overwrite=True, what="label") == {"app": "db"}


def test_patch_has_only_real_changes(capsys):
    patch = metadata_patch({"app": "web", "x": "1"}, {"app": "web"}, ["x", "missing"], overwrite=False, what="label")
    assert patch == {"x": None}
    assert capsys.readouterr().err == 'label "missing" not found.\n'
    assert outcome("labeled", patch) == "unlabeled"
    assert outcome("labeled", {}) == "not labeled"
    assert outcome("annotated", {"a": "1"}) == "annotated"
