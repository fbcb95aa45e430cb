package replicator

// RouteName is what a job's journal state is about: its source and its
// destination, down to the prefixes, as the configuration names them
// (Route), else as the buckets name themselves.
func (j Job) RouteName() string {
	if j.Route != "" {
		return j.Route
	}
	return j.Source.Name() + "/" + j.SourcePrefix + " -> " + j.Dest.Name() + "/" + j.DestPrefix
}
