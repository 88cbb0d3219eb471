"""Laying out the server's Tables and the other output formats like kubectl."""
import json

import pytest
import yaml

from ctl.discovery import UsageError
from ctl.printers import OutputFormat, TableOptions, TabWriter, human_duration, table_rows, to_yaml

TABLE = {"kind": "Table", "columnDefinitions": [
    {"name": "Name", "format": "name", "priority": 0}, {"name": "Ready", "priority": 0},
    {"name": "Restarts", "priority": 0}, {"name": "Age", "priority": 0}, {"name": "Node", "priority": 1}],
    "rows": [
        {"cells": ["web-1", "1/1", 0, "5m", "node-a"],
         "object": {"metadata": {"name": "web-1", "namespace": "prod", "labels": {"b": "2", "a": "1"}}}},
        {"cells": ["db", "0/1", 12, "10s", None], "object": {"metadata": {"name": "db", "namespace": "dev"}}}]}


def test_default_columns_aligned_like_kubectl():
    text = TabWriter().format(table_rows(TABLE, TableOptions()))
    assert text == ("NAME    READY   RESTARTS   AGE\n"
                    "web-1   1/1     0          5m\n"
                    "db      0/1     12         10s\n")


def test_wide_namespace_labels_and_kind_prefix():
    opts = TableOptions(wide=True, namespace_column=True, show_labels=True, kind_prefix="pod")
    rows = table_rows(TABLE, opts)
    assert rows[0] == ["NAMESPACE", "NAME", "READY", "RESTARTS", "AGE", "NODE", "LABELS"]
    assert rows[1] == ["prod", "pod/web-1", "1/1", "0", "5m", "node-a", "a=1,b=2"]
    assert rows[2] == ["dev", "pod/db", "0/1", "12", "10s", "<none>", "<none>"]


def test_no_headers_and_watch_rows_keep_earlier_widths():
    writer = TabWriter()
    first = writer.format(table_rows(TABLE, TableOptions()))
    later = writer.format([["x", "1/1", "0", "1s"]])
    assert later == "x       1/1     0          1s\n"
    assert table_rows(TABLE, TableOptions(no_headers=True))[0][0] == "web-1"
    assert first.splitlines()[0].startswith("NAME")


def test_object_formats():
    objs = [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "resourceVersion": "42"}}]
    single = OutputFormat.parse("yaml").render(objs, single=True)
    assert yaml.safe_load(single) == objs[0] and 'resourceVersion: "42"' in single
    listed = json.loads(OutputFormat.parse("json").render(objs, single=False))
    assert listed == {"apiVersion": "v1", "items": objs, "kind": "List", "metadata": {"resourceVersion": ""}}
    assert OutputFormat.parse("json").render(objs, single=True).startswith('{\n    "apiVersion"')
    assert OutputFormat.parse("name").render(objs, single=False, name_of=lambda o: "configmap/c") == "configmap/c\n"
    assert OutputFormat.parse("jsonpath={.metadata.name}").render(objs, single=True) == "c"
    assert OutputFormat.parse("jsonpath={.items[*].metadata.name}").render(objs, single=False) == "c"
    assert json.loads(OutputFormat.parse("jsonpath-as-json={.metadata.name}").render(objs, single=True)) == ["c"]


@pytest.mark.parametrize("value", ["xml", "jsonpath", "jsonpath=", "yaml=x", "jsonpath={.a"])
def test_bad_output_formats(value):
    with pytest.raises(UsageError):
        OutputFormat.parse(value)


def test_yaml_quotes_like_kubectl():
    assert to_yaml({"t": "2024-01-01T00:00:00Z", "n": "42", "b": "true", "s": "plain"}) == (
        'b: "true"\nn: "42"\ns: plain\nt: "2024-01-01T00:00:00Z"\n')


@pytest.mark.parametrize("secs, text", [(0, "0s"), (119, "119s"), (150, "2m30s"), (600, "10m"), (7200, "120m"),
                                        (4 * 3600 + 60, "4h1m"), (30 * 3600, "30h"), (3 * 86400, "3d"),
                                        (400 * 86400, "400d"), (-1, "<invalid>")])
def test_human_duration(secs, text):
    assert human_duration(secs) == text
