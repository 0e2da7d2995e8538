"""The final similarity of search by image: geometric matches rank above look-alikes, and the
unverified scale keeps 0.7 at the dev split's precision-0.99 point."""

from __future__ import annotations

from shared.matching import Verification
from shared.verification import UNVERIFIED_ANCHOR, VERIFIED_FLOOR, final_similarity


def test_a_geometric_match_ranks_above_any_look_alike() -> None:
    weak = Verification(15, 40, False, True)
    assert final_similarity(0.3, weak) >= VERIFIED_FLOOR
    assert final_similarity(0.3, weak) > final_similarity(1.0, None)
    assert final_similarity(0.99, Verification(400, 420, True, True)) >= 0.99
    # More inliers, higher score; never below the embedding's own similarity.
    assert final_similarity(0.5, Verification(200, 220, True, True)) > final_similarity(0.5, weak)
    assert final_similarity(0.97, weak) == 0.97


def test_unverified_scale_is_anchored_and_monotonic() -> None:
    assert abs(final_similarity(UNVERIFIED_ANCHOR, None) - 0.7) < 1e-9
    not_geometric = Verification(6, 30, False, False)
    xs = [i / 100 for i in range(0, 101)]
    ys = [final_similarity(x, not_geometric) for x in xs]
    assert ys == sorted(ys) and ys[-1] < VERIFIED_FLOOR and ys[0] == 0.0
