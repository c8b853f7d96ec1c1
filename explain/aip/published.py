"""The AIP paper's published CelebA numbers (Yang, Liu, Du & Hu, 2021, "Generative
Counterfactuals for Neural Networks via Attribute-Informed Perturbation").

The one place these numbers live: the augmentation record, its report and the tests read them
from here. The paper's scores on the explanation task are compared as an ordering
(:data:`explain.aip.scores.PAPER_ORDERING`), not as numbers.

:data:`PUBLISHED_AUGMENTATION`: test accuracy (a fraction) of the paper's two classifiers trained
without and with its AIP counterfactuals added to the training data (section 4.6.2, Table 5).
The table's spreads are left out: they could not be confirmed against a source.
"""

PUBLISHED_AUGMENTATION: dict[str, dict[str, float]] = {
    # Table 5, the CNN (the protocol's age classifier is a CNN too).
    "cnn": {"accuracy_without": 0.8732, "accuracy_with": 0.8885},
    # Table 5, the ResNet.
    "resnet": {"accuracy_without": 0.9096, "accuracy_with": 0.9135},
}


def augmentation_sentence() -> str:
    """The paper's augmentation result in one sentence, percentages as Table 5 prints them."""
    cnn, resnet = PUBLISHED_AUGMENTATION["cnn"], PUBLISHED_AUGMENTATION["resnet"]
    return (
        f"The paper (Table 5): CNN {100 * cnn['accuracy_without']:.2f} -> "
        f"{100 * cnn['accuracy_with']:.2f}; ResNet {100 * resnet['accuracy_without']:.2f} -> "
        f"{100 * resnet['accuracy_with']:.2f}."
    )
