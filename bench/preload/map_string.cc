// C++ containers: `rounds` times, build a std::map<std::string,
// std::vector<int>> of `keys` entries (keys of 8-40 characters, most past
// the small-string buffer; vectors of 0-`vec` ints grown by push_back),
// look every key up once, then tear the map down. new/delete of many sizes
// in the order the standard library makes them.
//
//   map_string rounds=R keys=K vec=N
//
// ops = entries inserted + looked up + destroyed; secs of all rounds.
#include <map>
#include <string>
#include <vector>

#include "common.h"

static struct arg args[] = {
    {"rounds", 20, 1, 1 << 20},
    {"keys", 100000, 1, 1 << 26},
    {"vec", 16, 0, 1 << 20},
};

int main(int argc, char **argv) {
    parse_args("map_string", argc, argv, args, sizeof args / sizeof *args);
    uint64_t s = rng_seed(0), ops = 0, sum = 0;
    double t0 = now_secs();
    for (uint64_t r = 0; r < args[0].value; r++) {
        std::map<std::string, std::vector<int>> m;
        std::vector<std::string> keys;
        keys.reserve(args[1].value);
        for (uint64_t k = 0; k < args[1].value; k++) {
            std::string key = "key:" + std::to_string(rng_next(&s));
            key.resize(8 + rng_next(&s) % 33, 'x');
            std::vector<int> v;
            uint64_t n = args[2].value ? rng_next(&s) % (args[2].value + 1) : 0;
            for (uint64_t i = 0; i < n; i++) v.push_back((int)i);
            m[key] = std::move(v);
            keys.push_back(std::move(key));
        }
        for (const auto &k : keys) sum += m.find(k)->second.size();
        ops += 3 * keys.size();
    }
    double secs = now_secs() - t0;
    print_result(ops, secs);
    return sum == 0xFFFFFFFFFFFFFFFFULL;  // keeps the lookups
}
