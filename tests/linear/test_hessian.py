"""Exact Hessians: autodiff against jax.hessian, closed-form spectra, inertia, Lanczos."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from jaxflow import DeepLinearNetwork, Task, loss
from jaxflow.linear import critical_point, hessian_spectrum, hvp, inertia, lanczos
from jaxflow.linear.hessian import hessian

DIAG31 = Task.from_spectrum(jnp.array([3.0, 1.0]), 2, 2)


@pytest.fixture(scope="module")
def random_case():
    key = jax.random.key(7)
    net = DeepLinearNetwork.init((3, 4, 2, 3), key, "gaussian", scale=1.0)
    X, Y = jax.random.normal(jax.random.key(8), (3, 9)), jax.random.normal(jax.random.key(9), (3, 9))
    return net, Task.from_data(X, Y)


def test_hessian_equals_jax_hessian_of_the_flat_loss(random_case):
    net, task = random_case
    theta, unravel = ravel_pytree(list(net.weights))
    reference = jax.jit(jax.hessian(lambda x: loss(DeepLinearNetwork(tuple(unravel(x))), task)))(theta)
    H = hessian(net, task)
    assert H.shape == (net.num_parameters,) * 2 == (26, 26)
    np.testing.assert_allclose(H, reference, rtol=0, atol=1e-13 * float(jnp.abs(reference).max()))
    v = jax.random.normal(jax.random.key(1), theta.shape)
    np.testing.assert_allclose(hvp(net, task, v), H @ v, atol=1e-13 * float(jnp.abs(H @ v).max()))


def test_closed_form_spectra_for_diag_3_1():
    # h = 2 at the origin: L(tD) = L(0) − t²⟨Σ, D_2 D_1⟩ + O(t⁴), so H = −[[0, B], [Bᵀ, 0]] with
    # B the bilinear map (D_1, D_2) ↦ tr(Σᵀ D_2 D_1) = Σ ⊗ I_hidden: eigenvalues ±σ_j, each
    # d_1 = 2 times: ±3, ±3, ±1, ±1.
    lam = np.asarray(hessian_spectrum(critical_point(DIAG31, (2, 2, 2), ()), DIAG31))
    np.testing.assert_allclose(lam, [-3, -3, -1, -1, 1, 1, 3, 3], atol=1e-14)
    # h = 2, mode 1 learnt (W_i = √3 e₀e₀ᵀ, residual G = e₁e₁ᵀ): D ↦ ‖D_2W_1 + W_2D_1‖² − 2⟨G, D_2D_1⟩
    # = 3(D2₀₀ + D1₀₀)² + 3D1₀₁² + 3D2₁₀² − 2D2₁₀D1₀₁ − 2D2₁₁D1₁₁ splits into 2×2 blocks
    # [[3,3],[3,3]] → 6, 0; [[3,−1],[−1,3]] → 4, 2; [[0,−1],[−1,0]] → ±1; plus D1₁₀, D2₀₁ → 0, 0.
    lam = np.asarray(hessian_spectrum(critical_point(DIAG31, (2, 2, 2), (0,)), DIAG31))
    np.testing.assert_allclose(lam, [-1, 0, 0, 0, 1, 2, 4, 6], atol=1e-14)
    # h = 2, mode 2 learnt (W_i = e₁e₁ᵀ, G = 3e₀e₀ᵀ): D2₀₁² + D1₁₀² + (D2₁₁ + D1₁₁)² − 6D2₀₀D1₀₀
    # − 6D2₀₁D1₁₀: blocks [[0,−3],[−3,0]] → ±3; [[1,−3],[−3,1]] → 4, −2; [[1,1],[1,1]] → 2, 0; 0, 0.
    lam = np.asarray(hessian_spectrum(critical_point(DIAG31, (2, 2, 2), (1,)), DIAG31))
    np.testing.assert_allclose(lam, [-3, -2, 0, 0, 0, 2, 3, 4], atol=1e-14)
    # h = 3, 4 at the origin: every term of W(t) = Π tD_i has h >= 3 factors of t, so H = 0.
    for h in (3, 4):
        assert not np.any(np.asarray(hessian(critical_point(DIAG31, (2,) * (h + 1), ()), DIAG31)))
    # h = 3, mode 1 learnt (W_i = a e₀e₀ᵀ, a = 3^{1/3}, a⁴ = 3a): a⁴(ΣD_i₀₀)² + a⁴D3₁₀² + a⁴D1₀₁²
    # − 2a D3₁₀D1₀₁: [[3a,−a],[−a,3a]] → 4a, 2a; the all-ones 3×3 block times 3a → 9a; 9 zeros.
    a = 3 ** (1 / 3)
    lam = np.asarray(hessian_spectrum(critical_point(DIAG31, (2, 2, 2, 2), (0,)), DIAG31))
    np.testing.assert_allclose(lam, [0] * 9 + [2 * a, 4 * a, 9 * a], atol=1e-13)
    assert inertia(lam) == (0, 9, 3)


def test_inertia_tolerance_scales_with_the_spectrum():
    # tol = P·eps·max|λ|: 4·2.2e-16·5 ≈ 4.4e-15
    assert inertia(np.array([-1e-15, 0.0, 1e-15, 5.0])) == (0, 3, 1)
    assert inertia(np.array([-1e-14, 0.0, 1e-15, 5.0])) == (1, 2, 1)
    assert inertia(np.zeros(3)) == (0, 3, 0)
    assert inertia(np.array([-1e-14, 1.0]), tol=1e-13) == (0, 1, 1)


def test_lanczos_matches_the_dense_spectrum(random_case):
    net, task = random_case
    dense = np.linalg.eigvalsh(np.asarray(hessian(net, task)))
    full = lanczos(net, task, jax.random.key(0), iterations=net.num_parameters)
    # a full Krylov space: all Ritz values are eigenvalues (to float64 rounding of ‖H‖ ≈ 10)
    np.testing.assert_allclose(np.sort(np.asarray(full.ritz_values)), dense, atol=1e-12)
    part = lanczos(net, task, jax.random.key(0), iterations=16)
    # Ritz values interlace the spectrum, and each lies within its residual bound of an eigenvalue
    assert dense[0] - 1e-12 <= part.smallest and part.largest <= dense[-1] + 1e-12
    for theta, r in zip(np.asarray(part.ritz_values), np.asarray(part.residuals)):
        assert np.min(np.abs(dense - theta)) <= r + 1e-12
    # the extremes converge first
    assert abs(float(part.largest) - dense[-1]) < 1e-8 * abs(dense[-1])


def test_lanczos_on_a_degenerate_critical_point():
    # h = 2 origin: spectrum {±3, ±1}, 4 distinct values in 8 dimensions: the Krylov space closes
    # after 4 steps; the restart keeps the Ritz values exact.
    net = critical_point(DIAG31, (2, 2, 2), ())
    res = lanczos(net, DIAG31, jax.random.key(0), iterations=8)
    np.testing.assert_allclose(np.sort(np.asarray(res.ritz_values)), [-3, -3, -1, -1, 1, 1, 3, 3], atol=1e-12)
    assert int(res.breakdowns) >= 1


def test_bad_inputs(random_case):
    net, task = random_case
    with pytest.raises(ValueError, match=r"v must have shape \(26\)"):
        hvp(net, task, jnp.ones(5))
    with pytest.raises(ValueError, match="net.widths"):
        hessian(net, DIAG31)
    with pytest.raises(ValueError, match="iterations must be at most"):
        lanczos(net, task, jax.random.key(0), iterations=27)
