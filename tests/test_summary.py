"""pc.summary / Module.summary: rows, parameter formulas, mult-adds and receptive fields."""
from __future__ import annotations

import pytest

from pycnn import nn
from pycnn.summary import LayerRow, ModelSummary, summary


def _lenet():
    models = pytest.importorskip("pycnn.models")
    if not hasattr(models, "lenet5"):
        pytest.skip("pycnn.models.lenet5 not available")
    return models.lenet5()


def _leaf_rows(s, *types):
    return [r for r in s.rows if r.type in types and not r.is_container]


def _input_for(model):
    """LeNet-5 takes (1, 28, 28) MNIST digits (padding 2) or (1, 32, 32) as in the paper."""
    first = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    return (1, 28, 28) if tuple(first.padding) in ((2, 2), "same") else (1, 32, 32)


def test_lenet5_table():
    model = _lenet()
    s = model.summary(_input_for(model))
    assert isinstance(s, ModelSummary)
    assert s.total_params == 61_706
    assert s.trainable_params == 61_706 and s.frozen_params == 0
    assert all(isinstance(r, LayerRow) for r in s.rows)

    convs = _leaf_rows(s, "Conv2d")
    pools = _leaf_rows(s, "MaxPool2d", "AvgPool2d")
    linears = _leaf_rows(s, "Linear")
    assert convs[0].formula == "6×(5×5×1)+6 = 156" and convs[0].params == 156
    assert convs[1].formula == "16×(5×5×6)+16 = 2,416" and convs[1].params == 2_416
    assert any(r.formula == "120×400+120 = 48,120" for r in linears + convs)
    assert linears[-1].output_shape == (1, 10)
    # receptive fields: conv1 5, pool1 6, conv2 14, pool2 16 input pixels; jumps 1, 2, 2, 4
    assert [convs[0].receptive_field, pools[0].receptive_field, convs[1].receptive_field,
            pools[1].receptive_field] == [5, 6, 14, 16]
    assert [convs[0].jump, pools[0].jump, convs[1].jump, pools[1].jump] == [1, 2, 2, 4]
    assert s.receptive_field in (16, 32)  # 32 when C5 is a 5x5 convolution over the 5x5 maps
    assert convs[0].output_shape == (1, 6, 28, 28)
    # the lectures' count: (kh*kw*C_in) * C_out * OH*OW per conv, in * out per linear layer, no bias
    assert convs[0].mult_adds == (5 * 5 * 1) * 6 * 28 * 28
    assert convs[1].mult_adds == (5 * 5 * 6) * 16 * 10 * 10
    assert convs[1].mac_formula == "5×5×6 × 16 × 10×10 = 240,000"
    assert [r.mult_adds for r in linears] == [400 * 120, 120 * 84, 84 * 10]
    assert s.total_mult_adds == 117_600 + 240_000 + 48_000 + 10_080 + 840
    assert s.total_mult_adds == sum(r.mult_adds for r in s.rows)

    text = str(s)
    for piece in ("16×(5×5×6)+16 = 2,416", "6×(5×5×1)+6 = 156", "Total params: 61,706",
                  "Trainable params: 61,706", "Non-trainable params: 0", "Output Shape", "Param #",
                  "Mult-Adds", "[1, 6, 28, 28]", "Conv2d"):
        assert piece in text, piece
    assert repr(s) == text


def test_summary_function_matches_method_and_restores_training_flag():
    model = _lenet()
    model.train()
    size = _input_for(model)
    a = model.summary(size)
    assert model.training and all(m.training for m in model.modules())
    b = summary(model, (2,) + size)  # explicit batch
    assert a.total_params == b.total_params
    assert b.rows[-1].output_shape[0] == 2
    assert b.total_mult_adds == 2 * a.total_mult_adds
    model.eval()
    summary(model, size)
    assert not any(m.training for m in model.modules())


def test_batchnorm_formula_frozen_and_mult_adds():
    model = nn.Sequential(nn.Conv2d(3, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 5))
    model[0].freeze()
    s = summary(model, (2, 3, 8, 8))
    conv, bn, lin = s["0"], s["1"], s["5"]
    assert conv.formula == "64×(3×3×3) = 1,728"
    assert bn.formula == "2×64 = 128" and bn.params == 128
    assert lin.formula == "5×64+5 = 325"
    assert s.total_params == 1_728 + 128 + 325
    assert s.frozen_params == 1_728 and s.trainable_params == 128 + 325
    assert conv.mult_adds == 1_728 * 2 * 8 * 8
    assert lin.mult_adds == 320 * 2  # the bias adds are not multiply-adds
    assert bn.mult_adds == 0 and bn.mac_formula == ""  # BatchNorm folds into the conv: not counted
    assert conv.trainable_params == 0
    assert "Non-trainable params: 1,728" in str(s)


@pytest.mark.parametrize("L,K", [(1, 3), (3, 3), (4, 5)])
def test_stacked_convs_receptive_field(L, K):
    model = nn.Sequential(*[nn.Conv2d(2, 2, K, padding=K // 2) for _ in range(L)])
    s = summary(model, (2, 16, 16))
    assert s.receptive_field == 1 + L * (K - 1)
    assert [r.receptive_field for r in _leaf_rows(s, "Conv2d")] == [1 + i * (K - 1) for i in range(1, L + 1)]


def test_receptive_field_stride_dilation_and_offset():
    model = nn.Sequential(nn.Conv2d(1, 1, 3, stride=2, padding=1), nn.Conv2d(1, 1, 3, dilation=2),
                          nn.MaxPool2d(2))
    s = summary(model, (1, 32, 32))
    r0, r1, r2 = _leaf_rows(s, "Conv2d", "MaxPool2d")
    assert (r0.receptive_field, r0.jump) == (3, 2)
    assert (r1.receptive_field, r1.jump) == (3 + 2 * 2 * 2, 2)  # r + (k-1)*d*j
    assert (r2.receptive_field, r2.jump) == (11 + 1 * 2, 4)
    assert r0.rf_offset == (-1, -1)  # padding 1 at jump 1
    # non-square kernels give (rh, rw)
    s2 = summary(nn.Sequential(nn.Conv2d(1, 1, (3, 5))), (1, 9, 9))
    assert s2.receptive_field == (3, 5)


def test_containers_report_their_row_and_children():
    block = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1))
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Residual(block),
                          nn.Concat(nn.Conv2d(4, 2, 1), nn.Conv2d(4, 3, 5, padding=2)))
    s = summary(model, (1, 8, 8))
    types = [(r.depth, r.type) for r in s.rows]
    assert types[:3] == [(0, "Sequential"), (1, "Conv2d"), (1, "Residual")]
    res = s["1"]
    assert res.is_container and res.params == 0 and res.formula == ""
    assert s["1.block.0"].depth == 3 and s["1.block.2"].receptive_field == 7
    assert res.receptive_field == 7  # max(block 7, identity 3)
    cat = s["2"]
    assert cat.output_shape == (1, 5, 8, 8)
    assert cat.receptive_field == 11 and s["2.0"].receptive_field == 7 and s["2.1"].receptive_field == 11
    assert s.total_params == sum(r.params for r in s.rows)
    text = str(s)
    assert "├─Residual (1): 1-2" in text and "└─Concat (2): 1-3" in text


def test_resnet18_basic_blocks():
    resnet = pytest.importorskip("pycnn.models.resnet")
    s = summary(resnet.resnet18(), (3, 64, 64))
    assert s.total_params == 11_689_512
    block = s["layer2.0"]
    assert block.type == "BasicBlock" and block.is_container
    assert s["layer2.0.downsample.0"].formula == "128×(1×1×64) = 8,192"
    assert s["layer1.0.bn1"].formula == "2×64 = 128"
    assert s["layer4"].receptive_field == 435  # ResNet-18's published theoretical receptive field
    assert s.receptive_field == 435
    assert s["fc"].output_shape == (1, 1000)


def test_float64_model_and_bad_input():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(2 * 4 * 4, 3)).double()
    s = summary(model, (1, 6, 6))
    assert s.rows[-1].output_shape == (1, 3)
    assert s.input_bytes == 36 * 8
    with pytest.raises(ValueError):
        summary(model, (1, 0, 6))
    with pytest.raises((ValueError, TypeError)):
        summary(model, "abc")
    with pytest.raises(ValueError, match="summary: .*Linear|summary: .*2"):
        summary(model, (1, 7, 7))  # flatten gives 50 features, Linear wants 32


def test_mlp_input_size():
    model = nn.Sequential(nn.Linear(784, 10))
    s = summary(model, (784,))
    assert s.input_size == (1, 784) and s.total_params == 7_850
    assert s.receptive_field is None


# ------------------------------------------------------------------------------------------------
# the lectures' multiply-add arithmetic
# ------------------------------------------------------------------------------------------------
def test_course_example_conv_mult_adds_and_mac_formula():
    """A 5x5 conv 3->256 on a 16x16 input (12x12 output): 5*5*3 * 256 * 12*12 = 2,764,800; the bias
    (256 adds per position) is not a multiply-add (torchinfo's count, 2,801,664, included it)."""
    s = summary(nn.Sequential(nn.Conv2d(3, 256, 5)), (3, 16, 16))
    conv = s["0"]
    assert conv.mult_adds == 2_764_800
    assert conv.mac_formula == "5×5×3 × 256 × 12×12 = 2,764,800"
    assert s.total_mult_adds == 2_764_800
    text = str(s)
    assert "MAC formula" in text and "5×5×3 × 256 × 12×12" in text and "2,764,800" in text
    assert "Total mult-adds (M): 2.76" in text
    # the header puts the MAC formula beside the parameter formula
    header = text.splitlines()[1]
    assert header.index("Param formula") < header.index("MAC formula") < header.index("Mult-Adds")


def test_mult_adds_scale_with_batch_and_groups_and_linear():
    s = summary(nn.Sequential(nn.Conv2d(3, 256, 5)), (4, 3, 16, 16))
    assert s["0"].mult_adds == 4 * 2_764_800
    assert s["0"].mac_formula == "4 × 5×5×3 × 256 × 12×12 = 11,059,200"
    # depthwise (groups = C): each output channel sees one input channel
    dw = summary(nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False)), (8, 10, 10))
    assert dw["0"].mult_adds == 3 * 3 * 1 * 8 * 10 * 10
    assert dw["0"].mac_formula == "3×3×1 × 8 × 10×10 = 7,200"
    grouped = summary(nn.Sequential(nn.Conv2d(8, 6, 3, groups=2)), (8, 5, 5))
    assert grouped["0"].mult_adds == (3 * 3 * 4) * 6 * 3 * 3
    lin = summary(nn.Sequential(nn.Linear(400, 120)), (2, 400))
    assert lin["0"].mult_adds == 2 * 400 * 120 and lin["0"].mac_formula == "2 × 400 × 120 = 96,000"
    # parameter-free and normalisation layers do no multiply-adds
    s2 = summary(nn.Sequential(nn.BatchNorm2d(3), nn.ReLU(), nn.MaxPool2d(2), nn.PReLU()), (3, 4, 4))
    assert s2.total_mult_adds == 0 and all(r.mac_formula == "" for r in s2.rows)


def test_resnet18_mult_adds_at_224_are_1_81_g():
    resnet = pytest.importorskip("pycnn.models.resnet")
    s = summary(resnet.resnet18(), (3, 224, 224))
    assert round(s.total_mult_adds / 1e9, 2) == 1.81
    assert s["conv1"].mac_formula == "7×7×3 × 64 × 112×112 = 118,013,952"
    assert s["fc"].mult_adds == 512 * 1000
    # every multiply-add is a conv's or the fc's
    convs = [r for r in s.rows if r.type in ("Conv2d", "Linear")]
    assert s.total_mult_adds == sum(r.mult_adds for r in convs)
    assert "Total mult-adds (G): 1.81" in str(s)
