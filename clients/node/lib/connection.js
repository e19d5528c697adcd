'use strict';
// Where a client finds the protos, its API key and its TLS settings: the same places as the Python SDK.

const fs = require('fs');
const os = require('os');
const path = require('path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const PACKAGE_ROOT = path.resolve(__dirname, '..');
const LOADER_OPTIONS = { keepCase: true, longs: Number, enums: String, defaults: true, oneofs: true };

/**
 * The folder that holds voicemesh/v1/*.proto: $VOICEMESH_PROTOS, else the copy `npm pack` puts in the
 * package, else the repository's protos/ (a checkout of VoiceMesh, where the package is developed).
 */
function protoRoot() {
  const candidates = [process.env.VOICEMESH_PROTOS, path.join(PACKAGE_ROOT, 'protos'),
    path.resolve(PACKAGE_ROOT, '..', '..', 'protos')].filter(Boolean);
  const found = candidates.find((dir) => fs.existsSync(path.join(dir, 'voicemesh', 'v1', 'agent.proto')));
  if (!found) throw new Error(`no VoiceMesh protos (voicemesh/v1/agent.proto) in ${candidates.join(', ')}`);
  return found;
}

const loaded = new Map();

/** The gRPC package object of `files` (loaded once), with the helper protos of this package on the path too. */
function loadProtos(files) {
  const key = files.join(',');
  if (!loaded.has(key)) {
    const includeDirs = [protoRoot(), path.join(PACKAGE_ROOT, 'protos')];
    loaded.set(key, grpc.loadPackageDefinition(protoLoader.loadSync(files, { ...LOADER_OPTIONS, includeDirs })));
  }
  return loaded.get(key);
}

/** $VOICEMESH_STATE_DIR, else ~/.voicemesh (where `voicemesh up` keeps its state and key). */
function stateDir() {
  const dir = process.env.VOICEMESH_STATE_DIR || path.join(os.homedir(), '.voicemesh');
  return dir.startsWith('~') ? path.join(os.homedir(), dir.slice(1)) : dir;
}

/** The key file: $VOICEMESH_KEY_FILE, else api_key in the state folder. */
function keyFile() {
  return process.env.VOICEMESH_KEY_FILE || path.join(stateDir(), 'api_key');
}

/** The key a client sends: $VOICEMESH_API_KEY, else the key file's content, else null. */
function readClientKey() {
  const fromEnv = (process.env.VOICEMESH_API_KEY || '').trim();
  if (fromEnv) return fromEnv;
  let text;
  try {
    text = fs.readFileSync(keyFile(), 'utf8').trim();
  } catch (error) {
    if (error.code === 'ENOENT') return null;
    throw new Error(`cannot read the VoiceMesh API key file ${keyFile()}: ${error.message}`);
  }
  return text || null;
}

function readPem(file, what) {
  try {
    return fs.readFileSync(file);
  } catch (error) {
    throw new Error(`cannot read the TLS ${what} ${file}: ${error.code === 'ENOENT' ? 'no such file' : error.message}`);
  }
}

/**
 * Channel credentials: TLS when a CA is given (or VOICEMESH_TLS_CA is set), presenting a client certificate
 * for mutual TLS when one is given (VOICEMESH_TLS_CERT / VOICEMESH_TLS_KEY); else plaintext.
 */
function channelCredentials({ ca, cert, key } = {}) {
  const settings = ca ? { ca, cert: cert || '', key: key || '' } : {
    ca: process.env.VOICEMESH_TLS_CA || '',
    cert: process.env.VOICEMESH_TLS_CERT || '',
    key: process.env.VOICEMESH_TLS_KEY || '',
  };
  if (!settings.ca) return grpc.credentials.createInsecure();
  if (Boolean(settings.cert) !== Boolean(settings.key)) {
    throw new Error('a TLS client certificate needs its key and the key its certificate');
  }
  return grpc.credentials.createSsl(
    readPem(settings.ca, 'CA certificate'),
    settings.key ? readPem(settings.key, 'client key') : null,
    settings.cert ? readPem(settings.cert, 'client certificate') : null,
  );
}

/** gRPC metadata carrying `authorization: Bearer <key>` when there is a key. */
function authMetadata(apiKey) {
  const metadata = new grpc.Metadata();
  if (apiKey) metadata.set('authorization', `Bearer ${apiKey}`);
  return metadata;
}

module.exports = { protoRoot, loadProtos, stateDir, keyFile, readClientKey, channelCredentials, authMetadata };
