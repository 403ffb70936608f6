//! Link flags of libhakmem.so.

fn main() {
    // Never unloaded: after a `dlclose`, blocks it handed out may still be
    // live and be freed, and its `pthread_atfork` handlers and thread-exit
    // key destructor stay registered with glibc. `-z nodelete` keeps the
    // object mapped (as `RTLD_NODELETE` would).
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-z,nodelete");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
