"""The label filters as pure functions (sightfleet/labelfilters.py): parsing with its 400 codes, and applying."""
from __future__ import annotations

import pytest

from sightfleet.labelfilters import BadFilter, LabelFilters, apply_filters, at_least, parse_filters


def parsed(**given) -> LabelFilters:
    return parse_filters(lambda name: given.get(name, []))


@pytest.mark.parametrize("given, expected", [
    ({}, LabelFilters()),
    ({"MinConfidence": ["70.5"]}, LabelFilters(MinConfidence=70.5)),
    ({"MaxLabels": ["0"]}, LabelFilters(MaxLabels=0)),
    ({"LabelInclusionFilters": ["kitty, Dog", "cat"]}, LabelFilters(LabelInclusionFilters=("Cat", "Dog"))),
    ({"LabelCategoryExclusionFilters": ["animals AND pets"]},
     LabelFilters(LabelCategoryExclusionFilters=("Animals and Pets",))),
    ({"LabelExclusionFilters": [" , "]}, LabelFilters()),
])
def test_parse(given, expected):
    assert parsed(**given) == expected
    assert LabelFilters.from_dict(expected.to_dict()) == expected   # what a job and a result carry


@pytest.mark.parametrize("given, code", [
    ({"MinConfidence": ["100.1"]}, "BAD_MINCONFIDENCE"), ({"MinConfidence": ["1e2"]}, "BAD_MINCONFIDENCE"),
    ({"MinConfidence": ["50", "60"]}, "BAD_MINCONFIDENCE"), ({"MaxLabels": ["-1"]}, "BAD_MAXLABELS"),
    ({"LabelInclusionFilters": ["x" * 51]}, "BAD_FILTER"), ({"LabelExclusionFilters": ["Cat"] * 101}, "BAD_FILTER"),
    ({"LabelCategoryInclusionFilters": ["Cat"]}, "BAD_FILTER"),   # a label is no category
])
def test_parse_refuses(given, code):
    with pytest.raises(BadFilter) as refused:
        parsed(**given)
    assert refused.value.code == code


def test_from_dict_refuses_what_is_no_filter_object():
    for doc in ({"Nope": 1}, ["MinConfidence"], {"MaxLabels": "many"}):
        with pytest.raises(BadFilter):
            LabelFilters.from_dict(doc)


BOXED = {"Name": "Cat", "Confidence": 90.0, "Instances": [{"Confidence": 90.0}, {"Confidence": 10.0}]}


def test_at_least_cuts_labels_and_their_boxes():
    assert at_least([BOXED, {"Name": "Dog", "Confidence": 40.0}], 50) == [{**BOXED, "Instances": [{"Confidence": 90.0}]}]


def test_a_reads_filters_go_over_the_uploads_over_the_defaults():
    labels = [{"Name": n, "Confidence": c} for n, c in (("Dog", 30.0), ("Cat", 90.0), ("Pet", 90.0))]
    defaults = LabelFilters(MinConfidence=55, MaxLabels=10)
    upload = LabelFilters(LabelExclusionFilters=("Pet",))
    assert [lb["Name"] for lb in apply_filters(labels, LabelFilters(), upload.merged_over(defaults))] == ["Cat"]
    lowered = apply_filters(labels, LabelFilters(MinConfidence=0), upload.merged_over(defaults))
    assert [lb["Name"] for lb in lowered] == ["Cat", "Dog"]


def test_equal_confidences_keep_the_stored_order():
    labels = [{"Name": n, "Confidence": 91.0} for n in ("Cat", "Feline", "Animal")]
    assert [lb["Name"] for lb in apply_filters(labels, LabelFilters(), LabelFilters())] == ["Cat", "Feline", "Animal"]
