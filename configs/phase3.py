# Phase 3, enhanced pretraining (arXiv 2409.02326; ../shared/DESIGN.md §1): ~2B synthetic tokens
# (OSS-Instruct-style files written from phase-2 seeds) mixed with phase-2 data, Python raised to
# ~50% (the mix is in the manifest's per-shard "epochs"), 5B tokens, from phase 2's weights
# (architecture included) with a fresh optimizer and schedule.
#
#   torchrun --nproc_per_node=8 train.py configs/phase3.py
#
# Batch as phase 1 (TrainConfig's default): 512 sequences x 8192 = 4,194,304 tokens/step.
# Steps: 5e9 / 4,194,304 = 1,192.1 -> 1,192.
# Schedule [our choice; the paper gives phase 2's]: re-warm 0 -> 5.3e-4 over 1000 steps, then
# linear decay to 0 over the remaining 192.
data_dir = "data/p3"
out_dir = "runs/phase3"
init_from = "runs/phase2/export"
max_iters = round(5e9 / (512 * 8192))  # 1_192
min_lr = 0.0
lr_schedule = "linear"
warmup_iters = 1000
eval_interval = 100
eval_iters = 2
ckpt_interval = 100
wandb_run_name = "phase3"
