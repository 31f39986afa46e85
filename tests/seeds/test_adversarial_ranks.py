"""Two gloo ranks: the discriminator starts and stays identical on every rank (averaged gradients), and
each rank draws other real bodies from the bank while the bank's generator stays the same on both."""

from __future__ import annotations

import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank(rank: int, port: int, queue) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        from spin.adversarial import AdversarialConfig, AdversarialPrior
        from spin.data.pose_bank import PoseBank
        from spin.geometry import axis_angle_to_matrix

        g = torch.Generator().manual_seed(0)
        bank = PoseBank(0.3 * torch.randn(64, 72, generator=g).numpy(),
                        torch.randn(64, 10, generator=g).numpy())
        torch.manual_seed(100 + rank)  # different initial weights per rank: the broadcast must fix that
        prior = AdversarialPrior(AdversarialConfig(enabled=True, lr=1e-3), bank=bank)
        start = torch.cat([p.detach().reshape(-1) for p in prior.discriminator.parameters()])
        fake_g = torch.Generator().manual_seed(rank)  # each rank sees its own predictions
        for _ in range(3):
            rot = axis_angle_to_matrix(torch.randn(8, 24, 3, generator=fake_g))
            prior.step([rot], [torch.randn(8, 10, generator=fake_g)])
        end = torch.cat([p.detach().reshape(-1) for p in prior.discriminator.parameters()])
        real = prior.real_batch(8)[1].numpy()  # this rank's next real bodies (betas)
        state = repr(prior.bank.state_dict())  # the sampler's generator, saved from rank 0 only
        queue.put((rank, start.numpy(), end.numpy(), real, state))  # plain arrays: no shared memory
    finally:
        dist.destroy_process_group()


def test_discriminator_is_synchronised_across_ranks():
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    ranks = mp.start_processes(_rank, args=(_free_port(), queue), nprocs=2, start_method="spawn", join=False)
    # read before joining: a rank blocks on a full pipe until its parameters are read
    results = {rank: (torch.from_numpy(start), torch.from_numpy(end), torch.from_numpy(real), state)
               for rank, start, end, real, state in (queue.get(timeout=300), queue.get(timeout=300))}
    while not ranks.join(timeout=60):
        pass
    (s0, e0, r0, b0), (s1, e1, r1, b1) = results[0], results[1]
    assert torch.equal(s0, s1) and torch.allclose(e0, e1, atol=1e-7)
    assert not torch.equal(s0, e0)  # it did train
    # each rank judges other real bodies, from one shared generator state (exact resume from rank 0's)
    assert not torch.equal(r0, r1) and b0 == b1
