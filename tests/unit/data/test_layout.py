"""NCHW <-> NHWC helpers: non-square shapes so that a swapped axis cannot pass."""

import numpy as np
import pytest

from workbench.data.layout import nchw_to_nhwc, nhwc_to_nchw


def _x(shape=(3, 9, 2, 100)):
    return np.arange(np.prod(shape), dtype=np.float32).reshape(shape)


def test_nchw_to_nhwc_shape_and_exact_element_mapping():
    x = _x()
    y = nchw_to_nhwc(x)
    assert y.shape == (3, 2, 100, 9)
    n, c, s, t = np.meshgrid(*[np.arange(d) for d in x.shape], indexing="ij")
    # every element: x_nhwc[n, s, t, c] == x[n, c, s, t]
    assert np.array_equal(y[n, s, t, c], x[n, c, s, t])
    assert y[2, 1, 57, 4] == x[2, 4, 1, 57]
    assert y.flags["C_CONTIGUOUS"] and y.dtype == np.float32


def test_nhwc_to_nchw_inverts_and_maps_elements():
    x = _x((2, 7, 3, 11))  # NCHW
    back = nhwc_to_nchw(nchw_to_nhwc(x))
    assert np.array_equal(back, x)
    h = _x((4, 2, 5, 9))  # NHWC (N, S, T, C)
    z = nhwc_to_nchw(h)
    assert z.shape == (4, 9, 2, 5)
    assert z[3, 8, 1, 4] == h[3, 1, 4, 8]
    assert z.flags["C_CONTIGUOUS"]


def test_channels_land_last_in_memory():
    # channel values must be adjacent in the NHWC buffer (what the DFC reads)
    x = _x((1, 9, 2, 100))
    flat = nchw_to_nhwc(x).reshape(-1)
    assert np.array_equal(flat[:9], x[0, :, 0, 0])


@pytest.mark.parametrize("fn", [nchw_to_nhwc, nhwc_to_nchw])
def test_rejects_non_4d(fn):
    with pytest.raises(ValueError, match="4-D"):
        fn(np.zeros((9, 2, 100), np.float32))
