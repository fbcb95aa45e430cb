// Reads one blob with the npm @azure/storage-blob package, a client that
// shares no code with voyageur, and prints what it found as one JSON line:
// {"size": N, "sha256": "HEX", "contentType": "...", "metadata": {...}}.
//
// Usage: AZURE_STORAGE_KEY=KEY node azblob-get.js SERVICE_URL ACCOUNT CONTAINER BLOB
// (the key in the environment, not on the command line).
'use strict';
const crypto = require('crypto');
const { BlobServiceClient, StorageSharedKeyCredential } = require('@azure/storage-blob');

async function main() {
  const [url, account, container, name] = process.argv.slice(2);
  const cred = new StorageSharedKeyCredential(account, process.env.AZURE_STORAGE_KEY);
  const blob = new BlobServiceClient(url, cred).getContainerClient(container).getBlobClient(name);
  const data = await blob.downloadToBuffer();
  const props = await blob.getProperties();
  const out = {
    size: data.length,
    sha256: crypto.createHash('sha256').update(data).digest('hex'),
    contentType: props.contentType,
    metadata: props.metadata,
  };
  process.stdout.write(JSON.stringify(out) + '\n');
}

main().catch((err) => {
  process.stderr.write(`azblob-get: ${err && err.message ? err.message : err}\n`);
  process.exit(1);
});
