"""Analysis of training: the vector analysis of each step, neural-collapse metrics, a
monitor that tells when training is complete, the curvature of the loss (the Hessian's extreme
eigenvalues by Lanczos on exact Hessian-vector products, the sharpness along training: science.md
§7), and the operator of the eigen-operator
experiment with its exact spectrum (science.md §1, §4, §5, §6). Imported from their modules:
the Ritz values of learned functions and subspace ascent (`ritz`), their polynomial degrees
(`degrees`), slow oscillations (`oscillation`), weight-matrix statistics (`weights`) and
errors at convergence compared over runs (`convergence`)."""

from ..recorder import record_members
from .collapse import neural_collapse
from .completion import CompletionMonitor, MemberMonitors, classify_trajectory
from .eigen_operator import (
    Spectrum,
    alignment,
    degree1_spectrum,
    degree2_matrix,
    degree2_spectrum,
    expm_skew,
    lambda_hat,
    linear_part,
    make_operators,
    plane_angle,
    r_squared,
    random_orthogonal,
    skew_symmetric,
    traceless_basis,
    unit_vectors,
)
from .hessian import HessianEigs, hessian_eigs, hessian_matrix, lanczos, layer_sharpness
from .sharpness import SharpnessMonitor
from .vector import (
    VectorRecorder,
    analyze_step,
    batch_coherence,
    decompose,
    effective_rank,
    effective_rank_from_sigma,
    per_sample_grad_norms,
    step_summary,
)
