"""The ECG5000 classifier of Van Looveren et al. (2021): a bidirectional LSTM with 256 units
per direction and a linear head on its final states, normal vs abnormal beats (the paper: ~99%
test accuracy), trained with Adam on the 4,500 training beats and evaluated on the other 500
(see jaxcf/data/ecg5000.py for the split and the standardisation).

    jaxcf train train/configs/bilstm_ecg.py --workdir workdir/bilstm_ecg

Measured on 2 shared CPU cores: 313 s of training (~26 s per epoch of 70 steps at batch 64),
test accuracy 0.986 (493 of 500; train 0.997). It is 0.98-0.99 from the first epoch on; the
later epochs, the last three at a tenth of the learning rate, lower the loss, not the error.
"""

from jaxcf.models import BiLSTMConfig
from jaxcf.training import TrainConfig


def get_config() -> TrainConfig:
    return TrainConfig(
        model=BiLSTMConfig(input_shape=(140, 1), num_classes=2, hidden=256),
        dataset="ecg5000",
        optimizer="adam",
        learning_rate=1e-3,
        lr_boundaries=(9,),
        lr_decay=0.1,
        epochs=12,
        batch_size=64,
        train_examples=4_500,
    )
