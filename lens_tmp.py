import asyncio, time, torch, sys
from hmt_stream.engine.batched import BatchedEngine
from hmt_stream.engine.transformers import TransformersEngine
from tests.engine.test_batched import prompt, greedy
from tests.engine.conftest import read
async def main():
    e = BatchedEngine.load("/tmp/bp/demo", model_id="demo", demo=True, device="cpu", weight_first=sys.argv[1] == "wf")
    for n in (1, 5):
        t = time.perf_counter(); c = time.process_time()
        await asyncio.gather(*(read(e.generate(prompt(i), greedy(300))) for i in range(n)))
        print("batched", n, "%.2fs cpu %.2fs steps %d" % (time.perf_counter() - t, time.process_time() - c, e.steps))
    await e.close()
    te = TransformersEngine(e.model, e.tokenizer, model_id="d", demo=True, workers=5)
    for n in (1, 5):
        t = time.perf_counter(); c = time.process_time()
        await asyncio.gather(*(read(te.generate(prompt(i), greedy(300))) for i in range(n)))
        print("threads", n, "%.2fs cpu %.2fs" % (time.perf_counter() - t, time.process_time() - c))
    await te.close()
asyncio.run(main())
