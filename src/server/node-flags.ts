/**
 * Node options the daemon is started with (the systemd unit, `npm start`, the
 * tests, the soak and the benchmarks all pass them).
 *
 * V8 sizes the old generation from the live heap, which for mtagent is small
 * (about 12 MB); every payload it holds across a flush promotes a few small
 * objects, so with the default limit V8 ran a full mark-compact about 35 times
 * a second at 300 MB/s and spent a quarter of the daemon's CPU on it. A floor
 * of 128 MB brings that to 12 a second (same run: 835 -> 600 CPU ticks) and
 * commits no memory by itself. It must be given at start: V8 reads it when the
 * heap is made, so v8.setFlagsFromString() is too late.
 */
export const DAEMON_NODE_FLAGS: readonly string[] = ['--initial-old-space-size=64'];
