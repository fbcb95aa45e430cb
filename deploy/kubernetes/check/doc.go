// Package check decodes every manifest of deploy/kubernetes strictly into
// the Kubernetes API types and checks what voyageur's sharded runs need of
// them. It is a module of its own, so that k8s.io/api stays out of
// voyageur's.
package check
