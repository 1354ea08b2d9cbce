# Phase 1, general pretraining (arXiv 2409.02326; ../shared/DESIGN.md §1): the 1.3B model on the
# raw code corpus after filtering, dedup and decontamination; 500B tokens.
#
#   torchrun --nproc_per_node=8 train.py configs/phase1.py
#
# TrainConfig's defaults are this phase, so only what differs is set here. They are:
#   batch: micro_batch 2 x grad_accum 32 x 8 GPUs = 512 sequences x 8192 tokens = 4,194,304
#          tokens per step (on N GPUs use grad_accum = 256 / N to keep the paper's batch);
#   steps: 500e9 / 4,194,304 = 119,209.3 -> max_iters 119,209;
#   schedule: linear warmup over 600 steps to 5.3e-4, cosine decay to 5.3e-5 at the last step;
#   AdamW betas (0.9, 0.95), weight decay 0.1, grad clip 1.0, bf16 compute with fp32 master
#   weights and fp32 gradient reduction (DeepSeek-Coder's values, the source of the paper's lr).
# compile stays off: torch.compile around the Triton kernels has not been run on a GPU yet.
eval_iters = 2             # 2 x 512 val sequences = 8.4M tokens, every 500 steps (~2.1B tokens)
