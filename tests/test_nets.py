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


def _randomise_batchnorm(model, rng):
    """Moving statistics far from the identity, negative scales included: a twin that pooled
    before BatchNorm, or mixed up channels, would then differ."""
    import keras
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            g = layer.get_weights()[0]
            layer.set_weights([rng.uniform(-1.5, 1.5, g.shape), rng.normal(0, 0.3, g.shape),
                               rng.normal(0, 0.3, g.shape), rng.uniform(0.5, 2.0, g.shape)])


@pytest.mark.slow
@pytest.mark.parametrize("activation,batchnorm,window", [(None, True, None), ("elu", False, None),
                                                         ("leaky_relu", True, nets.FACE_WINDOW)])
def test_cpu_twin_computes_the_same_function(activation, batchnorm, window):
    import keras

    from screener.fast_inception import cpu_twin
    rng = np.random.default_rng(7)
    m = nets.build("mesoinception4", activation=activation, batchnorm=batchnorm, window=window)
    _randomise_batchnorm(m, rng)
    twin = cpu_twin(m)
    assert twin is not None
    # Smooth images with edges (noise alone would leave most units off), odd values near 255.
    y, x = np.mgrid[0:256, 0:256]
    imgs = np.stack([np.dstack([(x * (k + 1) + y * c * 3) % 256 for c in range(3)])
                     for k in range(3)] + [rng.integers(0, 256, (256, 256, 3))]).astype(np.uint8)
    deep = keras.Model(m.input, m.get_layer("block2_pool").output).predict_on_batch(imgs)
    fast = keras.Model(twin.input, twin.get_layer("block2_half_resolution").output)
    fast = fast.predict_on_batch(imgs)
    assert deep.shape == fast.shape == (4, 64, 64, 12)
    assert np.abs(deep).max() > 0.1  # the comparison is not between zeros
    np.testing.assert_allclose(fast, deep, rtol=0, atol=2e-5 * np.abs(deep).max())
    np.testing.assert_allclose(twin.predict_on_batch(imgs), m.predict_on_batch(imgs), atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("arch", nets.ARCHS)
def test_window_hides_everything_outside_the_face_box(arch, tmp_path):
    """A windowed model's score does not move when pixels outside its window change, does move
    for pixels inside, and the window survives a save and a safe-mode load."""
    import keras
    keras.utils.set_random_seed(11)
    m = nets.build(arch, window=nets.FACE_WINDOW, dropout=0)
    rng = np.random.default_rng(3)
    x0, y0, x1, y1 = nets.FACE_WINDOW
    a = rng.integers(0, 256, (1, 256, 256, 3)).astype(np.uint8)
    b = a.copy()
    b[:, :y0] = 0
    b[:, :, x1:] = 255
    c = a.copy()
    c[:, y0:y1, x0:x1] = 255 - c[:, y0:y1, x0:x1]
    path = tmp_path / "w.keras"
    m.save(path)
    m = keras.models.load_model(path, safe_mode=True)
    assert nets.window_of(m) == nets.FACE_WINDOW and nets.window_of(nets.build(arch)) is None
    pa, pb, pc = (float(m.predict_on_batch(v)[0, 0]) for v in (a, b, c))
    assert pa == pb and pa != pc  # bit for bit: outside the window counts for nothing
    with pytest.raises(ValueError):
        nets.build(arch, window=(0, 0, 300, 10))


def test_cpu_twin_is_only_for_mesoinception():
    from screener.fast_inception import cpu_twin
    assert cpu_twin(nets.build("meso4")) is None


def _trainable(m):
    return sum(int(np.prod(w.shape)) for w in m.trainable_weights)


def test_width_srm_and_spectrum_options():
    base = _trainable(nets.build("meso4"))
    wide = _trainable(nets.build("meso4", width=2))
    assert 3.5 * base < wide < 4.5 * base  # channels x2 in every block: ~4x the weights
    # The SRM residuals are fixed: only block1's extra input channels (3 x 3 x 3 x 8) train.
    assert _trainable(nets.build("meso4", srm=True)) == base + 3 * 3 * 3 * 8
    m = nets.build("meso4", srm=True, spectrum=True)
    for fixed in ("grey", "srm", "spectrum_dct_rows", "spectrum_dct_cols"):
        assert not m.get_layer(fixed).trainable
    assert [m.get_layer(n) for n in ("meso_logit", "spectrum_logit", "p_fake")]
    p = np.asarray(m.predict_on_batch(np.zeros((2, 256, 256, 3), np.uint8)))
    assert p.shape == (2, 1) and np.all((p > 0) & (p < 1))
    with pytest.raises(ValueError):
        nets.build(width=0)


def test_spectrum_features_are_the_pooled_log_power_of_the_grey_dct():
    import keras
    from scipy.fft import dctn
    rng = np.random.default_rng(3)
    x = rng.integers(0, 256, (2, 256, 256, 3)).astype(np.uint8)
    m = nets.build(spectrum=True)
    got = keras.Model(m.input, m.get_layer("spectrum_features").output).predict_on_batch(x)
    g = (x / 255.0) @ np.array(nets.GREY)
    cells = 256 // nets.SPECTRUM_GRID
    for i in range(2):
        power = np.log10(dctn(g[i], norm="ortho") ** 2 + 1e-8).T
        want = power.reshape(nets.SPECTRUM_GRID, cells, nets.SPECTRUM_GRID, cells).mean((1, 3))
        np.testing.assert_allclose(got[i], want.ravel(), atol=1e-3)


def test_srm_residuals_are_high_pass():
    import keras
    m = nets.build(srm=True)
    res = keras.Model(m.input, m.get_layer("srm").output)
    flat = np.full((1, 256, 256, 3), 128, np.uint8)
    ramp = np.broadcast_to(np.arange(256, dtype=np.uint8)[None, :, None, None].transpose(0, 2, 1, 3),
                           (1, 256, 256, 3)).copy()
    noise = np.random.default_rng(0).integers(0, 256, (1, 256, 256, 3)).astype(np.uint8)
    inner = (slice(None), slice(4, -4), slice(4, -4))  # away from the zero padding
    assert np.abs(res.predict_on_batch(flat)[inner]).max() < 1e-4
    assert np.abs(res.predict_on_batch(ramp)[inner]).max() < 1e-3  # a linear ramp has no residual
    assert np.abs(res.predict_on_batch(noise)[inner]).mean() > 0.1


@pytest.mark.slow
def test_every_option_saves_loads_safely_converts_and_explains(tmp_path):
    import keras

    from screener import lite
    from screener.explain import Explainer
    from screener.fast_inception import cpu_twin
    from screener.scoring import load_model
    m = nets.build("meso4", srm=True, spectrum=True, width=2)
    norm = m.get_layer("spectrum_norm")
    norm.set_weights([np.full(1024, -4.0, np.float32), np.full(1024, 2.0, np.float32), np.array(1)])
    norm.finalize_state()
    path = tmp_path / "m.keras"
    m.save(path)
    x = np.random.default_rng(1).integers(0, 256, (4, 256, 256, 3)).astype(np.uint8)
    want = np.asarray(m.predict_on_batch(x)).reshape(-1)
    loaded = load_model(path, runtime="keras")  # safe mode, our registered layer
    np.testing.assert_allclose(loaded.predict(x), want, atol=1e-6)
    assert lite.disagreement(m, lite.LiteNet(lite.convert(m))) < lite.AGREE
    assert cpu_twin(nets.build("mesoinception4", srm=True)) is None
    # Grad-CAM follows the MesoNet branch; its P(fake) is the whole model's.
    e = Explainer(keras.models.load_model(path, safe_mode=True)).explain_many(x)
    np.testing.assert_allclose([v.p_fake for v in e], want, atol=1e-5)
    assert all(v.heat.shape == (256, 256) for v in e)


def test_a_saved_frequency_branch_holds_its_dct_as_weights_not_as_config_text(tmp_path):
    import zipfile
    m = nets.build(spectrum=True)
    m.save(tmp_path / "m.keras")
    with zipfile.ZipFile(tmp_path / "m.keras") as z:
        config = z.getinfo("config.json").file_size
    # A Constant initializer would write both 256x256 matrices into config.json as text (~2.9 MB).
    assert config < 100_000
    got = m.get_layer("spectrum_dct_rows").get_weights()[0]
    np.testing.assert_array_equal(got, nets.dct_matrix().T)
