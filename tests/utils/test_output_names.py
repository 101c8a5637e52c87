import pytest

from skinformer.utils.output_names import output_stems


def test_unique_stems_stay_plain():
    assert output_stems(["/d/a.jpg", "/d/b.png"]) == ["a", "b"]


def test_clashing_stems_keep_extension_then_mirror_folders():
    files = ["/d/x/case1.jpg", "/d/x/case1.png", "/d/y/case1.jpg", "/d/y/other.jpg"]
    stems = output_stems(files)
    assert stems == ["x/case1.jpg", "case1.png", "y/case1.jpg", "other"]
    assert len({s.lower() for s in stems}) == len(files)


def test_names_differing_only_in_case_are_an_error_naming_them():
    with pytest.raises(ValueError, match="case1.JPG.*case1.jpg"):
        output_stems(["/d/case1.JPG", "/d/case1.jpg"])
