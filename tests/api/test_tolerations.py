from api.tolerations import tolerated, tolerates, tolerating

GPU = {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}


def test_equal_matches_key_and_value():
    assert tolerates({"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}, GPU)


def test_equal_with_another_value_does_not_match():
    assert not tolerates({"key": "dedicated", "operator": "Equal", "value": "cpu"}, GPU)


def test_operator_defaults_to_equal():
    assert tolerates({"key": "dedicated", "value": "gpu"}, GPU)
    assert not tolerates({"key": "dedicated"}, GPU)


def test_equal_without_value_matches_a_taint_without_value():
    assert tolerates({"key": "k", "operator": "Equal"}, {"key": "k", "effect": "NoSchedule"})
    assert tolerates({"key": "k", "value": ""}, {"key": "k", "value": "", "effect": "NoSchedule"})


def test_exists_matches_any_value_of_its_key():
    assert tolerates({"key": "dedicated", "operator": "Exists"}, GPU)
    assert not tolerates({"key": "other", "operator": "Exists"}, GPU)


def test_exists_without_key_tolerates_everything():
    wildcard = {"operator": "Exists"}
    assert tolerates(wildcard, GPU)
    assert tolerates(wildcard, {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"})
    assert tolerates(wildcard, {"key": "k", "value": "v", "effect": "PreferNoSchedule"})


def test_empty_effect_matches_every_effect():
    for effect in ("NoSchedule", "PreferNoSchedule", "NoExecute"):
        assert tolerates({"key": "dedicated", "operator": "Exists"}, {**GPU, "effect": effect})


def test_effect_must_match_when_set():
    assert not tolerates({"key": "dedicated", "operator": "Exists", "effect": "NoExecute"}, GPU)
    assert not tolerates({"operator": "Exists", "effect": "NoExecute"}, GPU)


def test_unknown_operator_tolerates_nothing():
    assert not tolerates({"key": "dedicated", "operator": "Gt", "value": "gpu"}, GPU)


def test_tolerating_returns_the_first_matching_toleration():
    first = {"key": "dedicated", "operator": "Exists", "tolerationSeconds": 60}
    later = {"operator": "Exists"}
    assert tolerating([{"key": "other", "operator": "Exists"}, first, later], GPU) is first
    assert tolerating([{"key": "other", "operator": "Exists"}], GPU) is None


def test_tolerated_by_any_of_the_tolerations():
    assert tolerated([{"key": "other", "operator": "Exists"}, {"key": "dedicated", "value": "gpu"}], GPU)
    assert not tolerated([], GPU)
