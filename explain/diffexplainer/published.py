"""The DiffExplainer paper's published numbers (Fang et al., 2024, "DiffExplainer: Unveiling
Black Box Models Via Counterfactual Generation"), shown beside this protocol's.

The one place these numbers live: the report and the tests read them from here. The paper ran on
its own medical prognosis data, not PneumoniaMNIST, so they set a scale rather than a target.
Which of the paper's tables holds each number was not re-checked here.
"""

PUBLISHED: dict[str, dict[str, float]] = {
    # The agent's agreement with its black-box teacher on the test set.
    "agreement": {"accuracy": 0.96, "auc": 0.99, "kl": 0.17},
    # The diffusion autoencoder's reconstruction of test images from their own codes.
    "reconstruction": {"psnr_db": 35.3, "ssim": 0.99},
}
