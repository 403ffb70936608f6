//! The hktrace allocation-trace format (see `../shared/docs/trace-format.md`).
//! Nothing is implemented yet: the reader, writer and tools come with the
//! traces issue.
