package drill

import (
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strings"
)

// Endpoint is what residency is told from: an endpoint's configuration.
type Endpoint struct {
	Type   string // aws | s3 | minio | ovh | fs | azure
	URL    string
	Region string
	// Location is the operator's declaration for a store no preset knows
	// (a self-hosted MinIO): nil when the config has none.
	Location *Location
}

// Location is a configured `location:` of an endpoint.
type Location struct {
	Country  string // ISO 3166-1 alpha-2, e.g. CA
	Region   string // free text: a city, a data centre
	Provider string // free text; "" = self-hosted
}

// Destination is where a job's replica is, as far as voyageur can tell.
type Destination struct {
	Provider string `json:"provider"`
	Region   string `json:"region"`
	// InCanada is true or false when known from a provider preset or a
	// configured location, null when unknown: never guessed.
	InCanada *bool  `json:"in_canada"`
	Basis    string `json:"basis"`
}

// Known regions. Only these are ever called in or out of Canada: anything
// else is unknown.
var (
	awsCanada = map[string]string{"ca-central-1": "Montréal area", "ca-west-1": "Calgary"}
	// AWS region names outside Canada follow geography prefixes.
	awsElsewhere = regexp.MustCompile(`^(us|eu|ap|sa|me|af|il|mx|cn|us-gov)-[a-z]+-[0-9]+$`)
	ovhCanada    = map[string]string{"bhs": "Beauharnois", "ca-east-tor": "Toronto"}
	// OVHcloud Object Storage regions outside Canada.
	ovhElsewhere = map[string]bool{
		"gra": true, "sbg": true, "rbx": true, "de": true, "uk": true, "waw": true,
		"eu-west-par": true, "eu-south-mil": true, "ap-southeast-sgp": true,
		"ap-southeast-syd": true, "ap-south-mum": true, "us-east-va": true, "us-west-or": true,
	}
	azureCanada = map[string]string{"canadacentral": "Canada Central (Toronto)", "canadaeast": "Canada East (Québec City)"}

	ovhHost = regexp.MustCompile(`^s3\.([a-z0-9-]+)\.(?:io\.)?cloud\.ovh\.net$`)
	awsHost = regexp.MustCompile(`(?:^|\.)s3[.-](?:dualstack\.)?([a-z0-9-]+)\.amazonaws\.com$`)
)

func yes() *bool { v := true; return &v }
func no() *bool  { v := false; return &v }

// Locate tells the provider and region of an endpoint and whether it is in
// Canada, from its type, URL host and region (the provider presets), or
// from its configured location. An error means the configured location
// contradicts a preset.
func Locate(ep Endpoint) (Destination, error) {
	d := preset(ep)
	if ep.Location == nil {
		return d, nil
	}
	country := strings.ToUpper(ep.Location.Country)
	in := country == "CA"
	if d.InCanada != nil && *d.InCanada != in {
		return d, fmt.Errorf("location.country %s contradicts the endpoint's %s region %s", country, d.Provider, d.Region)
	}
	if d.InCanada == nil {
		d = Destination{Provider: ep.Location.Provider, Region: ep.Location.Region}
		if d.Provider == "" {
			d.Provider = "self-hosted"
		}
		if d.Region == "" {
			d.Region = country
		}
	}
	d.InCanada = &in
	d.Basis = fmt.Sprintf("configured location: country %s", country)
	return d, nil
}

// preset applies what the providers publish about their endpoints.
func preset(ep Endpoint) Destination {
	host := ""
	if u, err := url.Parse(ep.URL); err == nil {
		host = strings.ToLower(u.Hostname())
	}
	switch {
	case ep.Type == "ovh":
		// The operator names the provider and the region; a url only
		// replaces the preset address (a private endpoint, a proxy).
		basis := "type ovh, region " + ep.Region
		if ep.URL != "" {
			basis += " (url " + host + " replaces the preset address)"
		}
		return ovh(ep.Region, basis)
	case ovhHost.MatchString(host):
		return ovh(ovhHost.FindStringSubmatch(host)[1], "endpoint host "+host)
	case ep.Type == "aws" && ep.URL == "":
		return aws(ep.Region, "type aws, region "+ep.Region)
	case awsHost.MatchString(host):
		return aws(awsHost.FindStringSubmatch(host)[1], "endpoint host "+host)
	case ep.Type == "azure" && (ep.URL == "" || strings.HasSuffix(host, ".blob.core.windows.net")):
		if name, ok := azureCanada[ep.Region]; ok {
			return Destination{Provider: "azure", Region: ep.Region, InCanada: yes(), Basis: "type azure, region " + ep.Region + " (" + name + ")"}
		}
		return Destination{Provider: "azure", Region: ep.Region, Basis: "type azure without a Canadian region: the account's region is not known"}
	}
	d := Destination{Provider: ep.Type, Region: ep.Region, Basis: "no provider preset matches"}
	if host != "" {
		d.Basis += " the endpoint host " + host
		if ip := net.ParseIP(host); (ip != nil && ip.IsLoopback()) || host == "localhost" {
			d.Basis += " (loopback)"
		}
	}
	d.Basis += ": give the endpoint a location"
	return d
}

func ovh(region, basis string) Destination {
	d := Destination{Provider: "ovhcloud", Region: region, Basis: basis}
	switch {
	case ovhCanada[region] != "":
		d.InCanada, d.Basis = yes(), basis+" ("+ovhCanada[region]+")"
	case ovhElsewhere[region]:
		d.InCanada = no()
	default:
		d.Basis += ": not a known OVHcloud region"
	}
	return d
}

func aws(region, basis string) Destination {
	d := Destination{Provider: "aws", Region: region, Basis: basis}
	switch {
	case awsCanada[region] != "":
		d.InCanada, d.Basis = yes(), basis+" ("+awsCanada[region]+")"
	case awsElsewhere.MatchString(region):
		d.InCanada = no()
	default:
		d.Basis += ": not a known AWS region"
	}
	return d
}
