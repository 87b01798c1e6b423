/**
 * JupyterLab side of mlpipe-jupyter.
 *
 * A step's executed notebook lives under `.mlpipe/runs/`, which the server's contents API
 * hides. This plugin adds a read-only drive, `mlpipe:`, backed by the server extension's
 * `/mlpipe/api/records/`, and opens a record in a JupyterLab tab when the pipeline widget
 * asks for it (a DOM event, since a widget's view cannot reach the application).
 */
import { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { PathExt, URLExt } from '@jupyterlab/coreutils';
import { IDocumentManager } from '@jupyterlab/docmanager';
import type { DocumentRegistry, IDocumentWidget } from '@jupyterlab/docregistry';
import { Contents, ServerConnection } from '@jupyterlab/services';
import { ISignal, Signal } from '@lumino/signaling';

const DRIVE = 'mlpipe';
/** Dispatched by the widget's "Open executed notebook" link; detail: `{ path }`, relative to
 * the notebook that shows the widget. Cancelled (preventDefault) when handled here. */
const OPEN_EVENT = 'mlpipe:open-notebook';

class RecordDrive implements Contents.IDrive {
  readonly name = DRIVE;
  readonly serverSettings: ServerConnection.ISettings;
  private _fileChanged = new Signal<Contents.IDrive, Contents.IChangedArgs>(this);
  private _disposed = false;

  constructor(serverSettings: ServerConnection.ISettings) {
    this.serverSettings = serverSettings;
  }

  get fileChanged(): ISignal<Contents.IDrive, Contents.IChangedArgs> {
    return this._fileChanged;
  }

  get isDisposed(): boolean {
    return this._disposed;
  }

  dispose(): void {
    this._disposed = true;
    Signal.clearData(this);
  }

  private url(localPath: string): string {
    return URLExt.join(this.serverSettings.baseUrl, 'mlpipe/api/records',
                       URLExt.encodeParts(localPath));
  }

  async get(localPath: string, options?: Contents.IFetchOptions): Promise<Contents.IModel> {
    const query = options?.content === false ? '?content=0' : '';
    const response = await ServerConnection.makeRequest(this.url(localPath) + query, {},
                                                        this.serverSettings);
    if (!response.ok) {
      throw await ServerConnection.ResponseError.create(response);
    }
    return (await response.json()) as Contents.IModel;
  }

  async getDownloadUrl(localPath: string): Promise<string> {
    return this.url(localPath);
  }

  private readOnly(): Promise<never> {
    return Promise.reject(new Error('A pipeline run record is read-only.'));
  }

  newUntitled(): Promise<Contents.IModel> { return this.readOnly(); }
  delete(): Promise<void> { return this.readOnly(); }
  rename(): Promise<Contents.IModel> { return this.readOnly(); }
  save(): Promise<Contents.IModel> { return this.readOnly(); }
  copy(): Promise<Contents.IModel> { return this.readOnly(); }
  createCheckpoint(): Promise<Contents.ICheckpointModel> { return this.readOnly(); }
  async listCheckpoints(): Promise<Contents.ICheckpointModel[]> { return []; }
  restoreCheckpoint(): Promise<void> { return this.readOnly(); }
  deleteCheckpoint(): Promise<void> { return this.readOnly(); }
}

/** A record's tab title, `train_forest · output.ipynb`, for
 * `mlpipe:<dir>/.mlpipe/runs/<run>/train_forest/output.ipynb` (or `step.ipynb`): every step's
 * record has the same file name, so the tab says which step it is. Null for other paths. */
function recordTitle(path: string): string | null {
  if (!path.startsWith(`${DRIVE}:`)) {
    return null;
  }
  const match = /(?:^|\/)runs\/[^/]+\/([^/]+)\/((?:step|output)\.ipynb)$/.exec(
    path.slice(DRIVE.length + 1));
  return match ? `${match[1]} · ${match[2]}` : null;
}

/** Title a record's tab after its step. A document widget takes a new tab label for a rename
 * of its file (`_onTitleChanged`), which a read-only record refuses: that handler is
 * disconnected first, for this widget only. */
function titleAfterStep(widget: IDocumentWidget): void {
  const label = recordTitle(widget.context.path);
  if (label === null) {
    return;
  }
  const renameOnTitle = (widget as unknown as {
    _onTitleChanged?: (sender: IDocumentWidget['title']) => void;
  })._onTitleChanged;
  if (renameOnTitle === undefined) {
    return; // a JupyterLab that renames another way: keep its label rather than risk a rename
  }
  widget.title.changed.disconnect(renameOnTitle, widget);
  widget.title.label = label;
}

/** The contents path of the document whose view holds `node`, if any. */
function documentPath(app: JupyterFrontEnd, docs: IDocumentManager, node: Node): string | null {
  for (const widget of app.shell.widgets('main')) {
    if (widget.node.contains(node)) {
      return docs.contextForWidget(widget)?.path ?? null;
    }
  }
  return null;
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'mlpipe-jupyter:records',
  description: 'Opens a pipeline step\'s executed notebook from the mlpipe widget.',
  autoStart: true,
  requires: [IDocumentManager],
  activate: (app: JupyterFrontEnd, docs: IDocumentManager) => {
    app.serviceManager.contents.addDrive(new RecordDrive(app.serviceManager.serverSettings));
    document.addEventListener(OPEN_EVENT, (event: Event) => {
      const rel = (event as CustomEvent<{ path?: string }>).detail?.path;
      const from = event.target instanceof Node ? documentPath(app, docs, event.target) : null;
      if (!rel || from === null || from.includes(':')) {
        return; // not ours to resolve: the widget falls back to its plain link
      }
      const path = PathExt.normalize(PathExt.join(PathExt.dirname(from), rel));
      if (path.startsWith('..')) {
        return;
      }
      event.preventDefault();
      docs.openOrReveal(`${DRIVE}:${path}`, undefined, undefined, { mode: 'tab-after' },
                        { shouldStart: false, canStart: false });
    });
    // a record is read, never run: no kernel for it, however it was opened (Notebook 7 opens
    // every document from its URL in a new page, where the preference above is not passed)
    // (factories register as their plugins activate, some after this one)
    const kernelFree = (factory?: DocumentRegistry.WidgetFactory) =>
      factory?.widgetCreated.connect((_, widget) => {
        if (widget.context.path.startsWith(`${DRIVE}:`)) {
          const session = widget.context.sessionContext;
          session.kernelPreference = { ...session.kernelPreference, shouldStart: false,
                                       canStart: false };
          titleAfterStep(widget);
        }
      });
    for (const factory of docs.registry.widgetFactories()) {
      kernelFree(factory);
    }
    docs.registry.changed.connect((_, change) => {
      if (change.type === 'widgetFactory' && change.change === 'added' && change.name) {
        kernelFree(docs.registry.getWidgetFactory(change.name));
      }
    });
    // the widget offers the in-JupyterLab link only when someone listens for it
    document.body.dataset.mlpipeRecords = DRIVE;
  }
};

export default plugin;
