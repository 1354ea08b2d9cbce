# Phase 2, continued pretraining (arXiv 2409.02326; ../shared/DESIGN.md §1): the top 12.5B
# tokens by the quality annotator, repeated 4x (the manifest's shards carry "epochs": 4), 50B
# tokens, starting from phase 1's weights (architecture included) with a fresh optimizer and
# schedule.
#
#   torchrun --nproc_per_node=8 train.py configs/phase2.py
#
# Batch as phase 1 (TrainConfig's default): 512 sequences x 8192 = 4,194,304 tokens/step.
# Steps: 50e9 / 4,194,304 = 11,920.9 -> 11,921.
# Schedule: re-warm 0 -> 5.3e-4 over 1000 steps, then linear decay to 0.
data_dir = "data/p2"
out_dir = "runs/phase2"
init_from = "runs/phase1/export"
max_iters = round(50e9 / (512 * 8192))  # 11_921
min_lr = 0.0
lr_schedule = "linear"
warmup_iters = 1000
eval_interval = 250
eval_iters = 2
ckpt_interval = 250
wandb_run_name = "phase2"
