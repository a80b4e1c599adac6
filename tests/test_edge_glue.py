"""Prose glued from a run that selected nothing: a sentence that says so, not a crash or 'nan%'.

A chapter's smoke run, a changed seed or a weaker model can leave a selection empty (no image both
classified correctly and fooled, no c that succeeds). These are the helpers the chapters use then.
"""

import matplotlib
import torch

from advcourse.experiments import ch03_lbfgs_blind_spots as bsp
from advcourse.report import num, pct

matplotlib.use("Agg")


def test_pct_shows_its_placeholder_only_for_nan():
    assert pct(0.1234) == pct(0.1234, if_nan="—") == "12.3%"
    assert pct(float("inf"), if_nan="—") == "inf%"    # only NaN is replaced
    assert pct(0.0, if_nan="—") == "0.0%"           # zero is a measured value, not a missing one
    assert pct(float("nan")) == "nan%"               # without the keyword, as before
    assert pct(float("nan"), if_nan="—") == "—"
    assert pct(torch.tensor([]).float().mean(), if_nan="—") == "—"  # the mean over an empty selection


def _set(correct, fooled):
    n = len(correct)
    x = torch.zeros(n, 1, 28, 28)
    return bsp.AdversarialSet(x=x, y=torch.zeros(n, dtype=torch.long), x_adv=x, correct=torch.tensor(correct),
                              fooled=torch.tensor(fooled), distortion=torch.zeros(n))


def test_none_fooled_names_why_the_selection_is_empty():
    assert bsp.none_fooled(_set([True, False], [True, True]), "FC10") is None   # one image is selected
    why = bsp.none_fooled(_set([True, True, False], [False, False, True]), "FC10")
    assert why.startswith("None of the 3 attacked images") and "none of the 2 it classifies correctly" in why
    why = bsp.none_fooled(_set([False, False], [True, True]), "FC10")
    assert "classifies none of them correctly" in why
    assert not why.endswith(".")  # the chapter ends the sentence


def test_empty_panels_say_so_instead_of_failing(capsys):
    import matplotlib.pyplot as plt

    empty = {"adversarial r": torch.zeros(0), "Gaussian, same ‖r‖": torch.zeros(0)}
    ax = bsp.show_stretch(empty, bound=10.0, title="FC100")
    assert not ax.axison and bsp.NOTHING_TO_SHOW in ax.texts[0].get_text()
    ax = bsp.show_rays(torch.zeros(0, 5, dtype=torch.long), torch.zeros(0, dtype=torch.long),
                       torch.linspace(0, 6, 5), "rays")
    assert not ax.axison
    assert capsys.readouterr().out.count(bsp.NOTHING_TO_SHOW) == 2
    full = {"adversarial r": torch.tensor([2.0, 3.0]), "Gaussian, same ‖r‖": torch.tensor([0.5, 0.7])}
    ax = bsp.show_stretch(full, bound=10.0, title="FC100")
    assert ax.axison and len(ax.patches) > 0 and not ax.texts
    plt.close("all")



def test_num_shows_a_dash_for_a_mean_over_nothing():
    assert num(1.2345) == "1.23" and num(1.2345, ".1f") == "1.2" and num(torch.tensor(0.5), ".2f") == "0.50"
    assert num(float("nan")) == "—" and num(torch.tensor([]).mean(), ".2f") == "—"
    assert num(float("nan"), if_nan="n/a") == "n/a"
