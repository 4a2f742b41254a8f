"""screener.nets: the paper's architectures and their options."""
import numpy as np
import pytest

from screener import nets


@pytest.mark.parametrize("arch,params", [("meso4", 27977), ("mesoinception4", 28615)])
def test_paper_parameter_counts(arch, params):
    # The paper's trainable-parameter counts (BatchNorm moving statistics are not trainable).
    m = nets.build(arch)
    assert sum(int(np.prod(w.shape)) for w in m.trainable_weights) == params


def test_options_io_and_weight_order():
    m = nets.build("meso4", activation="elu", batchnorm=False, dropout=0)
    x = np.zeros((2, 256, 256, 3), np.uint8)
    p = np.asarray(m.predict_on_batch(x))
    assert p.shape == (2, 1) and np.all((p > 0) & (p < 1))
    assert [lay.name for lay in nets.weight_layers(m)] == [
        "block1_conv", "block2_conv", "block3_conv", "block4_conv", "dense16", "p_fake"]
    inc = nets.weight_layers(nets.build("mesoinception4"))
    assert len(inc) == 16 + 4 + 2 and inc[0].name == "block1_1x1"


def test_bad_options_raise():
    with pytest.raises(ValueError):
        nets.build("resnet")
    with pytest.raises(ValueError):
        nets.build(activation="tanh")
