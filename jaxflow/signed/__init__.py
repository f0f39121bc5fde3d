"""Signed graphs of networks: matrix-free blocks, frustration estimators, null models, monotonicity.

The frustration estimator itself is `jaxflow.signed.frustration.frustration` (also
`jaxflow.frustration`); this package does not bind it, so `jaxflow.signed.frustration` stays the module.
"""

from .activations import Activation as Activation
from .blocks import (
    Block as Block,
    Broadcast as Broadcast,
    ChannelRoute as ChannelRoute,
    ChannelScale as ChannelScale,
    Conv2d as Conv2d,
    ConvTranspose2d as ConvTranspose2d,
    Dense as Dense,
    Pool as Pool,
    Route as Route,
    Skip as Skip,
    Sparse as Sparse,
)
from .bounds import BoundResult as BoundResult, lower_bound as lower_bound
from .energy import block_frustration as block_frustration, gauge_frustration as gauge_frustration
from .estimators import (
    Anneal as Anneal,
    Estimator as Estimator,
    Exact as Exact,
    Greedy as Greedy,
    Ladder as Ladder,
    Layerwise as Layerwise,
    SearchSettings as SearchSettings,
    as_estimator as as_estimator,
    default_restarts as default_restarts,
    default_survivors as default_survivors,
    default_tol as default_tol,
)
from .frustration import FrustrationResult as FrustrationResult
from .function import GraphFunction as GraphFunction, with_graph_weights as with_graph_weights
from .graph import Layer as Layer, SignedGraph as SignedGraph
from .importers import (
    from_equinox as from_equinox,
    from_npz as from_npz,
    from_onnx as from_onnx,
    load_graph as load_graph,
)
from .monotonicity import (
    ActiveSubnetworks as ActiveSubnetworks,
    MonotonicityScore as MonotonicityScore,
    NullMonotonicity as NullMonotonicity,
    Orthant as Orthant,
    PerturbationTest as PerturbationTest,
    active_subnetworks as active_subnetworks,
    monotonicity_score as monotonicity_score,
    null_model_monotonicity as null_model_monotonicity,
    orthant_perturbation_test as orthant_perturbation_test,
    relu_masks as relu_masks,
    restrict as restrict,
)
from .nullmodels import (
    NullModelResult as NullModelResult,
    null_model_frustration as null_model_frustration,
    shuffle_signs as shuffle_signs,
)
