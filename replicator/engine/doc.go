// Package engine replicates a job's source to its destination: Sync runs
// one scan diff (for cron), Watch keeps following event sources with
// reconcile scans.
//
// A run diffs a streamed listing against the journal's index, queues every
// change durably before acting on it, and drains the queue with bounded
// workers: single PUTs for small objects, the multipart driver for large
// ones (checkpointed part by part, so a killed run resumes), deletes under
// the fail-safe rules. A journal that lost its index is rebuilt from the
// replicas' fingerprints instead of sending everything again.
package engine
