#!/usr/bin/env python3
"""Bytes a study moves between host and device with --backend cuda, computed from the sizes (issue 11, step 2).

Before (commit 848a8d6): the study built every seed's D_sp and shifted test sets on the host and handed the backend
host arrays: each ERM training uploaded its (S, N, L) training set and the three test sets, every final evaluation,
feature pass and saliency pass uploaded its inputs again, and the final evaluation brought logits back.
Now: D_base and the clean test set go up once, D_sp and the shifted test sets are made on the device
(kernels/spurious.cu), the final evaluation scores on the device and returns counts and int8 predictions.

Same in both, and counted in both: parameters up (load_params / reset), each step's batch rows up and the losses down,
periodic scores down, features and saliency maps down (they are outputs the host reduces).

    python3 scripts/bytes-moved.py [--seeds 100] [--channels 25] [--steps 6000] ...
"""
import argparse

F32 = I32 = 4


def study_bytes(a, after):
    S, N, NT, L, K, C = a.seeds, a.train, a.test, a.length, a.classes, a.channels
    l1 = (L + 2 - 5) // 2 + 1
    l3 = ((l1 + 2 - 3) // 2 + 1 + 2 - 3) // 2 + 1
    F = C * l3
    P = C * 5 + C + 2 * (C * C * 3 + C) + K * F + K
    chunks = 1  # evaluation chunk per set: the default chunk holds a whole MNIST-1D set at these sizes
    up = down = 0
    trainings = 3  # erm-base, erm (shared by dfr, dfr-source, afr-source), afr stage 1
    finishes = 6
    # Per ERM training: parameters, batch rows every step, losses and periodic scores every eval_every steps.
    evals = a.steps // a.eval_every
    up += trainings * (S * P * F32 + a.steps * (S * a.batch * I32 + 16))
    down += trainings * evals * (S * F32 + 4 * chunks * S * (K + 1) * 4)
    sal_sets = S * (N + 3 * NT) * L * F32  # saliency maps of the four sets (down, in both)
    z_dfr = 2 * S * N * F * F32            # dfr, dfr-source: features of D_base
    z_afr = 2 * 2 * S * N * F * F32        # afr, afr-source: features of D_sp and D_base
    down += finishes * sal_sets + z_dfr + z_afr
    up += (finishes + 4) * S * P * F32     # parameters for every finish and feature pass
    if not after:
        x_train, x_test_sets = S * N * L * F32, (NT + 2 * S * NT) * L * F32
        labels = (N + 3 * NT) * I32
        up += trainings * (x_train + x_test_sets + labels)          # set_train_data + add_eval_set per training
        up += finishes * 2 * (x_train + x_test_sets) + finishes * 2 * labels  # final predict + saliency inputs
        down += finishes * S * (N + 3 * NT) * K * F32                 # final logits
        up += 2 * N * L * F32 + 2 * (S * N * L + N * L) * F32         # feature passes' inputs
    else:
        up += (N + NT) * L * F32 + (N + NT) * I32                   # D_base and the clean test set, once
        down += S * NT * I32                                        # the conflicting set's planted classes
        down += finishes * (4 * chunks * S * (K + 1) * 4 + 3 * S * NT)  # final scores and int8 predictions
    return up, down


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, default=100)
    p.add_argument("--train", type=int, default=4000)
    p.add_argument("--test", type=int, default=1000)
    p.add_argument("--length", type=int, default=40)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--channels", type=int, default=25)
    p.add_argument("--steps", type=int, default=6000)
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--eval-every", type=int, default=250)
    a = p.parse_args()
    print(f"S={a.seeds} N={a.train} NT={a.test} L={a.length} C={a.channels} steps={a.steps}, all six methods, saliency on")
    for name, after in (("before (848a8d6)", False), ("now", True)):
        up, down = study_bytes(a, after)
        print(f"{name:18s} host->device {up / 1e6:9.1f} MB   device->host {down / 1e6:9.1f} MB   total {(up + down) / 1e6:9.1f} MB")
    (u0, d0), (u1, d1) = study_bytes(a, False), study_bytes(a, True)
    print(f"{'saved':18s} host->device {(u0 - u1) / 1e6:9.1f} MB   device->host {(d0 - d1) / 1e6:9.1f} MB")


if __name__ == "__main__":
    main()
