"""Run with `mpiexec -n 2 python trainer_fit.py OUTDIR`: `pycnn train`'s settings (LeNet-5, 12 epochs,
batch 32 per rank, SGD lr 0.03 momentum 0.9, cosine schedule) through Trainer.fit under a process
group, with validation, ModelCheckpoint into OUTDIR and EarlyStopping. Each rank writes what it
saw to OUTDIR/rank-<r>.json: its History, evaluate() and predict() on the test set."""
import json
import os
import sys

import numpy as np

import pycnn as pc
from pycnn import nn, optim
from pycnn.optim.lr_scheduler import CosineAnnealingLR


def main(outdir, epochs=12):
    pc.distributed.init_process_group(timeout=120)
    rank = pc.distributed.get_rank()
    pc.manual_seed(0)
    x_train, y_train, x_test, y_test = pc.data.datasets.load_mnist_sample()
    model = pc.models.lenet5()
    opt = optim.SGD(model.parameters(), lr=0.03, momentum=0.9)
    trainer = pc.Trainer(model, opt, nn.CrossEntropyLoss(), scheduler=CosineAnnealingLR(opt, T_max=epochs))
    callbacks = [pc.callbacks.ModelCheckpoint(os.path.join(outdir, "ckpt.safetensors")),
                 pc.callbacks.EarlyStopping(monitor="val_loss", patience=4)]
    history = trainer.fit(x_train, y_train, batch_size=32, epochs=epochs, validation_data=(x_test, y_test),
                          callbacks=callbacks, verbose=0)
    result = trainer.evaluate(x_test, y_test)
    predicted = trainer.predict(x_test).numpy().argmax(1)
    with open(os.path.join(outdir, f"rank-{rank}.json"), "w") as f:
        json.dump({"history": history.history, "evaluate": result,
                   "predict_accuracy": float(np.mean(predicted == y_test)),
                   "world_size": pc.distributed.get_world_size(), "threads": pc.get_num_threads()}, f)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 12)
