// Package events delivers change events to a watcher: the event sources
// (an HTTP webhook for MinIO, S3 via SNS or EventBridge, and Azure Event
// Grid; an SQS queue; MinIO's listen stream) and the parsing of the event
// formats they carry.
//
// Events are hints: at least once, maybe out of order, maybe lost. A source
// acknowledges an event only after the watcher's Intake made it durable,
// and reports a gap whenever events may have been lost, so that the
// watcher reconciles with a scan.
package events
