"""Time forward + backward of U2PLContrastiveLoss at the paper's scale.

Defaults follow U2PL on PASCAL VOC: 8 images per GPU (4 labeled + 4
unlabeled) whose representations are 129 x 129 (513 crops at stride 4),
256-d, 21 classes, queues of 30000 keys, M = 50 anchors and N = 256
negatives per anchor. The queues start full (steady state) and the inputs
are synthetic but shaped like real ones: blocky label maps with a few
classes per image, teacher probabilities peaked on the label, 20% of the
unlabeled pixels unreliable.

Example::

    python tools/benchmark/bench_contrastive_loss.py --device cpu --repeat 3

Prints one markdown table row with the date, hardware, torch version,
median / min time per step and peak memory (CUDA: max allocated; CPU: peak
resident set size of the process, which includes the bank and inputs).
"""
import argparse
import datetime
import platform
import resource
import statistics
import time

import torch
import torch.nn.functional as F

from mmseg_semi.models.losses import U2PLContrastiveLoss

IGNORE = 255


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--device', default=None,
                        help="'cpu' or 'cuda' (default: cuda if available)")
    parser.add_argument('--repeat', type=int, default=10)
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--batch-size', type=int, default=8)
    parser.add_argument('--size', type=int, default=129)
    parser.add_argument('--channels', type=int, default=256)
    parser.add_argument('--num-classes', type=int, default=21)
    parser.add_argument('--queue-size', type=int, default=30000)
    parser.add_argument('--num-anchors', type=int, default=50)
    parser.add_argument('--num-negatives', type=int, default=256)
    parser.add_argument('--max-push-per-class', type=int, default=None)
    parser.add_argument('--bank-dtype', default='float32')
    parser.add_argument('--unreliable-fraction', type=float, default=0.2)
    parser.add_argument('--seed', type=int, default=0)
    return parser.parse_args()


def synthetic_batch(args, device, generator):
    """Representations, labels, probabilities and masks of one step."""
    batch, size, classes = args.batch_size, args.size, args.num_classes
    num_labeled = batch // 2
    blocks = -(-size // 16)
    # Each image: background plus 3 random classes on a 16 x 16 block grid.
    present = torch.randint(1, classes, (batch, 3), generator=generator)
    present = torch.cat([torch.zeros(batch, 1, dtype=torch.long), present], 1)
    choice = torch.randint(0, 4, (batch, blocks, blocks), generator=generator)
    labels = present.gather(1, choice.flatten(1)).view(batch, blocks, blocks)
    labels = labels.repeat_interleave(16, 1).repeat_interleave(16, 2)
    labels = labels[:, :size, :size].contiguous()
    logits = torch.randn(batch, classes, size, size, generator=generator)
    logits += 3 * F.one_hot(labels, classes).permute(0, 3, 1, 2)
    probs = logits.softmax(dim=1)
    unreliable = torch.rand(batch, size, size,
                            generator=generator) < args.unreliable_fraction
    unreliable[:num_labeled] = False
    # Unlabeled rows carry reliable arg-max pseudo-labels only.
    pseudo = probs.argmax(dim=1).masked_fill(unreliable, IGNORE)
    labels[num_labeled:] = pseudo[num_labeled:]
    is_labeled = torch.arange(batch) < num_labeled
    reps = [
        torch.randn(batch, args.channels, size, size, generator=generator)
        for _ in range(2)
    ]
    return dict(
        student=reps[0].to(device).requires_grad_(),
        teacher=reps[1].to(device),
        labels=labels.to(device),
        probs=probs.to(device),
        unreliable=unreliable.to(device),
        is_labeled=is_labeled.to(device))


def synchronize(device):
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def hardware(device):
    if device.type == 'cuda':
        return torch.cuda.get_device_name(device)
    model = platform.processor() or platform.machine()
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    model = line.split(':', 1)[1].strip()
                    break
    except OSError:
        pass
    return f'{model}, {torch.get_num_threads()} threads'


def main():
    args = parse_args()
    device = torch.device(args.device or (
        'cuda' if torch.cuda.is_available() else 'cpu'))
    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    loss_fn = U2PLContrastiveLoss(
        num_classes=args.num_classes,
        feat_channels=args.channels,
        num_anchors=args.num_anchors,
        num_negatives=args.num_negatives,
        queue_size=args.queue_size,
        max_push_per_class=args.max_push_per_class,
        memory_bank=dict(dtype=args.bank_dtype)).to(device)
    bank = loss_fn.memory_bank
    # Steady state: every queue full of unit keys.
    bank.keys.copy_(F.normalize(torch.randn(bank.keys.shape), dim=-1))
    bank.count.fill_(args.queue_size)
    inputs = synthetic_batch(args, device, generator)
    step_generator = torch.Generator(device=device).manual_seed(args.seed)

    def step():
        inputs['student'].grad = None
        loss = loss_fn(inputs['student'], inputs['teacher'], inputs['labels'],
                       inputs['probs'], inputs['unreliable'],
                       inputs['is_labeled'], generator=step_generator)
        loss.backward()
        return loss

    for _ in range(args.warmup):
        step()
    synchronize(device)
    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(args.repeat):
        synchronize(device)
        start = time.perf_counter()
        loss = step()
        synchronize(device)
        times.append(time.perf_counter() - start)
    if device.type == 'cuda':
        peak = f'{torch.cuda.max_memory_allocated(device) / 2**20:.0f} MiB ' \
            'max allocated'
    else:
        # ru_maxrss is in KiB on Linux.
        peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        peak = f'{peak_kib / 1024:.0f} MiB peak RSS'
    bank_mib = bank.keys.numel() * bank.keys.element_size() / 2**20
    config = (f'B={args.batch_size}, {args.size}x{args.size}, '
              f'D={args.channels}, C={args.num_classes}, '
              f'K={args.queue_size} ({args.bank_dtype}, {bank_mib:.0f} MiB),'
              f' M={args.num_anchors}, N={args.num_negatives}, '
              f'cap={args.max_push_per_class}')
    print('| date | hardware | torch | config | median fwd+bwd | min | '
          'peak memory | loss |')
    print('|---|---|---|---|---|---|---|---|')
    print(f'| {datetime.date.today().isoformat()} | {hardware(device)} | '
          f'{torch.__version__} | {config} | '
          f'{1000 * statistics.median(times):.1f} ms | '
          f'{1000 * min(times):.1f} ms | {peak} | {loss.item():.4f} |')


if __name__ == '__main__':
    main()
