package azure

import "testing"

// TestOneLine: azidentity's chain report, with the HTTP exchange it dumps
// under a credential, becomes one line naming each credential's failure.
func TestOneLine(t *testing.T) {
	in := "DefaultAzureCredential: failed to acquire a token.\nAttempted credentials:\n" +
		"\tEnvironmentCredential: missing environment variable AZURE_TENANT_ID\n" +
		"\tManagedIdentityCredential authentication failed. \n" +
		"\t\tGET http://169.254.169.254/metadata/identity/oauth2/token\n\t\t-----\n\t\tRESPONSE 400: 400 Bad Request\n" +
		"\tAzureCLICredential: Azure CLI not found on path\n"
	want := "DefaultAzureCredential: failed to acquire a token; EnvironmentCredential: missing environment variable AZURE_TENANT_ID; " +
		"ManagedIdentityCredential authentication failed; AzureCLICredential: Azure CLI not found on path"
	if got := oneLine(in); got != want {
		t.Errorf("oneLine:\n got %q\nwant %q", got, want)
	}
	const single = "authorized requests are not permitted for non-TLS protected (https) endpoints"
	if got := oneLine(single); got != single {
		t.Errorf("one line already: %q", got)
	}
}
