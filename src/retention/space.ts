// How much the retention volume may still take.
import { statfs } from '../native';

export interface SpaceAccount {
  /** What the agent may use in all: maxBytes, or what it uses plus the volume's free space less the reserve. */
  capacityBytes: number;
  usedBytes: number;
  ingestBytes: number;
  undoBytes: number;
  /** capacity - used, never below 0. */
  availableBytes: number;
  volumeCapacityBytes: number;
  volumeFreeBytes: number;
}

export async function measureSpace(
  retentionDir: string,
  ingestBytes: number,
  undoBytes: number,
  maxBytes: number | null,
  reserveBytes: number,
): Promise<SpaceAccount> {
  const fs = await statfs(retentionDir);
  const used = ingestBytes + undoBytes;
  const byVolume = used + Math.max(0, fs.availableBytes - reserveBytes);
  const capacity = maxBytes === null ? byVolume : Math.min(maxBytes, byVolume);
  return {
    capacityBytes: capacity,
    usedBytes: used,
    ingestBytes,
    undoBytes,
    availableBytes: Math.max(0, capacity - used),
    volumeCapacityBytes: fs.capacityBytes,
    volumeFreeBytes: fs.availableBytes,
  };
}
