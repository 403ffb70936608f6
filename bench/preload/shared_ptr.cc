// C++ shared ownership: T threads, each keeping `live` std::shared_ptr
// slots; every iteration replaces a random slot with std::make_shared of an
// object of 16-256 bytes (one allocation holding object and control block),
// and every `share`-th iteration hands a copy to the next thread's slot
// table through a mutex-guarded exchange, so the last owner (and the
// delete) is often another thread.
//
//   shared_ptr threads=T iters=N live=L share=K
//
// ops = make_shared + destructions of the last owner (counted by the
// objects' destructor); secs from start to the last thread's end.
#include <array>
#include <atomic>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "common.h"

static struct arg args[] = {
    {"threads", 2, 1, 256},
    {"iters", 1000000, 1, 1ULL << 40},
    {"live", 1000, 1, 1 << 24},
    {"share", 8, 1, 1 << 30},
};

static std::atomic<uint64_t> destroyed{0};

struct Base {
    virtual ~Base() { destroyed.fetch_add(1, std::memory_order_relaxed); }
};
template <size_t N>
struct Obj : Base {
    std::array<char, N> bytes{};
};

static std::shared_ptr<Base> make(uint64_t r) {
    switch (r % 5) {
        case 0: return std::make_shared<Obj<8>>();
        case 1: return std::make_shared<Obj<24>>();
        case 2: return std::make_shared<Obj<56>>();
        case 3: return std::make_shared<Obj<120>>();
        default: return std::make_shared<Obj<248>>();
    }
}

struct Mailbox {
    std::mutex lock;
    std::vector<std::shared_ptr<Base>> items;
};

int main(int argc, char **argv) {
    parse_args("shared_ptr", argc, argv, args, sizeof args / sizeof *args);
    unsigned t = (unsigned)args[0].value;
    std::vector<Mailbox> box(t);
    double t0 = now_secs();
    {
        std::vector<std::thread> threads;
        for (unsigned i = 0; i < t; i++) {
            threads.emplace_back([i, t, &box] {
                uint64_t s = rng_seed(i);
                std::vector<std::shared_ptr<Base>> slot(args[2].value);
                std::vector<std::shared_ptr<Base>> incoming;
                for (uint64_t n = 0; n < args[1].value; n++) {
                    uint64_t r = rng_next(&s);
                    slot[r % slot.size()] = make(r >> 32);
                    if (n % args[3].value == 0) {
                        Mailbox &to = box[(i + 1) % t];
                        std::lock_guard<std::mutex> g(to.lock);
                        to.items.push_back(slot[r % slot.size()]);
                    }
                    if (n % 256 == 0) {
                        {
                            std::lock_guard<std::mutex> g(box[i].lock);
                            incoming.swap(box[i].items);
                        }
                        for (auto &p : incoming) slot[rng_next(&s) % slot.size()] = std::move(p);
                        incoming.clear();
                    }
                }
            });
        }
        for (auto &th : threads) th.join();
    }
    double secs = now_secs() - t0;
    box.clear();
    uint64_t made = args[1].value * t;
    print_result(made + destroyed.load(), secs);
    return 0;
}
