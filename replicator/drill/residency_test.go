package drill

import "testing"

// TestLocate: the provider presets say in or out of Canada, anything else
// is unknown (null) until a location is configured, and a location that
// contradicts a preset is an error.
func TestLocate(t *testing.T) {
	tr, fa := true, false
	for _, c := range []struct {
		name     string
		ep       Endpoint
		provider string
		region   string
		in       *bool
	}{
		{"ovh bhs preset", Endpoint{Type: "ovh", Region: "bhs"}, "ovhcloud", "bhs", &tr},
		{"ovh toronto preset", Endpoint{Type: "ovh", Region: "ca-east-tor"}, "ovhcloud", "ca-east-tor", &tr},
		{"ovh host in Gravelines", Endpoint{Type: "s3", URL: "https://s3.gra.io.cloud.ovh.net"}, "ovhcloud", "gra", &fa},
		{"ovh host in bhs", Endpoint{Type: "minio", URL: "https://s3.bhs.io.cloud.ovh.net"}, "ovhcloud", "bhs", &tr},
		{"aws ca-central-1", Endpoint{Type: "aws", Region: "ca-central-1"}, "aws", "ca-central-1", &tr},
		{"aws ca-west-1", Endpoint{Type: "aws", Region: "ca-west-1"}, "aws", "ca-west-1", &tr},
		{"aws us-east-1", Endpoint{Type: "aws", Region: "us-east-1"}, "aws", "us-east-1", &fa},
		{"aws host", Endpoint{Type: "s3", URL: "https://s3.dualstack.ca-central-1.amazonaws.com"}, "aws", "ca-central-1", &tr},
		{"aws unknown region", Endpoint{Type: "aws", Region: "xx-moon-1"}, "aws", "xx-moon-1", nil},
		{"azure canada central", Endpoint{Type: "azure", Region: "canadacentral"}, "azure", "canadacentral", &tr},
		{"azure no region", Endpoint{Type: "azure"}, "azure", "", nil},
		{"self-hosted minio", Endpoint{Type: "minio", URL: "http://127.0.0.1:9000"}, "minio", "", nil},
		{"self-hosted with location", Endpoint{Type: "minio", URL: "http://127.0.0.1:9000", Location: &Location{Country: "ca", Region: "Toronto TR2"}}, "self-hosted", "Toronto TR2", &tr},
		{"self-hosted abroad", Endpoint{Type: "minio", URL: "http://10.0.0.1:9000", Location: &Location{Country: "US"}}, "self-hosted", "US", &fa},
	} {
		d, err := Locate(c.ep)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if d.Provider != c.provider || d.Region != c.region || (d.InCanada == nil) != (c.in == nil) || (c.in != nil && *d.InCanada != *c.in) {
			t.Errorf("%s: got %+v (in_canada %v), want %s %s %v", c.name, d, d.InCanada, c.provider, c.region, c.in)
		}
		if d.Basis == "" {
			t.Errorf("%s: no basis", c.name)
		}
	}
	if _, err := Locate(Endpoint{Type: "ovh", Region: "bhs", Location: &Location{Country: "FR"}}); err == nil {
		t.Error("a location contradicting the ovh bhs preset was accepted")
	}
}
