// Every C++ allocation function under LD_PRELOAD=libhakmem.so
// (capi/tests/c_api.rs): each operator new/delete form and glibc alias
// resolves to libhakmem.so (dladdr of the symbol the program binds to), each
// form serves and frees blocks of the right size and alignment, malloc's
// usable size shows hakmem served them, failures throw std::bad_alloc after
// the new-handler (or return null for nothrow). Prints "cxx checks passed".
#include <dlfcn.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <initializer_list>
#include <new>

extern "C" {
void *__libc_malloc(size_t);
void __libc_free(void *);
void *__libc_calloc(size_t, size_t);
void *__libc_realloc(void *, size_t);
void *__libc_memalign(size_t, size_t);
}

static int failures;
#define CHECK(c)                                                        \
    do {                                                                \
        if (!(c)) {                                                     \
            fprintf(stderr, "cxx_new.cpp:%d: failed: %s\n", __LINE__, #c); \
            failures++;                                                 \
        }                                                               \
    } while (0)

static const char *const symbols[] = {
    "_Znwm", "_Znam", "_ZnwmSt11align_val_t", "_ZnamSt11align_val_t",
    "_ZnwmRKSt9nothrow_t", "_ZnamRKSt9nothrow_t",
    "_ZnwmSt11align_val_tRKSt9nothrow_t", "_ZnamSt11align_val_tRKSt9nothrow_t",
    "_ZdlPv", "_ZdaPv", "_ZdlPvm", "_ZdaPvm", "_ZdlPvSt11align_val_t",
    "_ZdaPvSt11align_val_t", "_ZdlPvmSt11align_val_t", "_ZdaPvmSt11align_val_t",
    "_ZdlPvRKSt9nothrow_t", "_ZdaPvRKSt9nothrow_t",
    "_ZdlPvSt11align_val_tRKSt9nothrow_t", "_ZdaPvSt11align_val_tRKSt9nothrow_t",
    "__libc_malloc", "__libc_free", "__libc_calloc", "__libc_realloc",
    "__libc_memalign", "__posix_memalign", "malloc", "free",
};

struct alignas(64) A64 { char c[100]; };
struct alignas(256) A256 { char c[10]; };

volatile size_t huge = SIZE_MAX / 4;
void *volatile sink;
static int handler_calls;
static void handler() {
    if (++handler_calls == 2) std::set_new_handler(nullptr);
}

// The usable size hakmem gives a block of `n` bytes (its 16-byte classes
// up to 128 bytes); glibc's would be n + 8 rounded to 16 minus 8 (24 for 1).
static bool hakmem_block(void *p, size_t n) {
    return p && malloc_usable_size(p) == ((n + 15) & ~(size_t)15);
}

static void fill(void *p, size_t n, int v) { memset(p, v, n); sink = p; }

int main() {
    for (const char *s : symbols) {
        void *f = dlsym(RTLD_DEFAULT, s);
        Dl_info info;
        bool ours = f && dladdr(f, &info) && info.dli_fname && strstr(info.dli_fname, "libhakmem");
        if (!ours) {
            fprintf(stderr, "%s: not libhakmem.so's (%s)\n", s, f && dladdr(f, &info) ? info.dli_fname : "missing");
            failures++;
        }
    }

    // Plain, array, sized delete.
    char *c = new char[1];
    CHECK(hakmem_block(c, 1));
    fill(c, 1, 1);
    delete[] c;
    int *i = new int(7);
    CHECK(hakmem_block(i, sizeof(int)) && *i == 7);
    delete i;
    void *p = ::operator new(100);
    CHECK(hakmem_block(p, 100));
    fill(p, 100, 2);
    ::operator delete(p, 100);
    p = ::operator new[](40);
    CHECK(hakmem_block(p, 40));
    ::operator delete[](p, 40);
    p = ::operator new(0);
    void *q = ::operator new(0);
    CHECK(p && q && p != q);
    ::operator delete(p);
    ::operator delete(q);

    // nothrow.
    p = ::operator new(64, std::nothrow);
    CHECK(hakmem_block(p, 64));
    ::operator delete(p, std::nothrow);
    p = ::operator new[](64, std::nothrow);
    CHECK(hakmem_block(p, 64));
    ::operator delete[](p, std::nothrow);
    CHECK(::operator new(huge, std::nothrow) == nullptr);
    CHECK(::operator new[](huge, std::nothrow) == nullptr);

    // Aligned (new-expressions of over-aligned types, and direct calls).
    A64 *a = new A64;
    CHECK(((uintptr_t)a & 63) == 0 && malloc_usable_size(a) >= sizeof(A64));
    fill(a, sizeof *a, 3);
    delete a;
    A64 *as = new A64[5];
    CHECK(((uintptr_t)as & 63) == 0);
    fill(as, 5 * sizeof *as, 4);
    delete[] as;
    A256 *b = new (std::nothrow) A256;
    CHECK(b && ((uintptr_t)b & 255) == 0);
    delete b;
    for (size_t al = 16; al <= (1u << 20); al <<= 1) {
        for (size_t n : {(size_t)1, (size_t)100, (size_t)5000, (size_t)70000}) {
            std::align_val_t v{al};
            void *x = ::operator new(n, v);
            void *y = ::operator new[](n, v);
            void *z = ::operator new(n, v, std::nothrow);
            void *w = ::operator new[](n, v, std::nothrow);
            for (void *e : {x, y, z, w}) {
                CHECK(e && ((uintptr_t)e & (al - 1)) == 0 && malloc_usable_size(e) >= n);
                fill(e, n, 5);
            }
            ::operator delete(x, n, v);
            ::operator delete[](y, n, v);
            ::operator delete(z, v, std::nothrow);
            ::operator delete[](w, v, std::nothrow);
            x = ::operator new(n, v);
            y = ::operator new[](n, v);
            ::operator delete(x, v);
            ::operator delete[](y, v);
        }
    }
    CHECK(::operator new(huge, std::align_val_t{64}, std::nothrow) == nullptr);

    // Failure: std::bad_alloc, after the new-handler when there is one.
    bool threw = false;
    try {
        sink = ::operator new(huge);
    } catch (const std::bad_alloc &) {
        threw = true;
    }
    CHECK(threw);
    threw = false;
    std::set_new_handler(handler);
    try {
        sink = new char[huge];
    } catch (const std::bad_alloc &) {
        threw = true;
    }
    CHECK(threw && handler_calls == 2);
    threw = false;
    try {
        sink = ::operator new(huge, std::align_val_t{128});
    } catch (const std::bad_alloc &) {
        threw = true;
    }
    CHECK(threw);

    // The glibc aliases.
    void *m = __libc_malloc(24);
    CHECK(hakmem_block(m, 24));
    m = __libc_realloc(m, 48);
    CHECK(hakmem_block(m, 48));
    __libc_free(m);
    m = __libc_calloc(4, 8);
    CHECK(hakmem_block(m, 32) && ((char *)m)[31] == 0);
    __libc_free(m);
    m = __libc_memalign(4096, 10);
    CHECK(m && ((uintptr_t)m & 4095) == 0);
    __libc_free(m);

    if (failures) {
        fprintf(stderr, "%d cxx checks failed\n", failures);
        return 1;
    }
    puts("cxx checks passed");
    return 0;
}
