/**
 * Node options the daemon is started with: the systemd unit, `npm start`,
 * the installed wrapper, the tests, the soak and the benchmarks all pass them.
 *
 * V8 sizes the old generation from the live heap, which for mtagent is small
 * (about 12 MB), and every payload held across a flush promotes a few small
 * objects: with the default limit V8 ran a full mark-compact about 35 times a
 * second at 300 MB/s, a quarter of the daemon's CPU. A 64 MB floor halves
 * that (5 s at 300 MB/s: 200 -> 99 mark-compacts, 835 -> 669 CPU ticks;
 * 128 MB gave 60 and 602 ticks but 20-90 MiB more peak RSS). It commits no
 * memory by itself. It must be given at start: V8 reads it when the heap is
 * made, and v8.setFlagsFromString() later has no effect (measured).
 */
export const DAEMON_NODE_FLAGS: readonly string[] = ['--initial-old-space-size=64'];
