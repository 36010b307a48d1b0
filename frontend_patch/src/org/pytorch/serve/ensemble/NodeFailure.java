package org.pytorch.serve.ensemble;

import java.util.concurrent.CompletionException;
import java.util.concurrent.ExecutionException;

/**
 * A workflow node's failure with the status the client should get (cvserve patch, see
 * frontend_patch/README.md). Either the node's own error body (a handler's per-request 4xx, sent
 * on unchanged like the model endpoint would) or a message for TorchServe's error object.
 */
public class NodeFailure extends RuntimeException {

    private static final long serialVersionUID = 1L;

    private final int status;
    private final transient byte[] body;
    private final transient CharSequence contentType;

    public NodeFailure(int status, String message) {
        super(message);
        this.status = status;
        this.body = null;
        this.contentType = null;
    }

    public NodeFailure(int status, byte[] body, CharSequence contentType) {
        super("workflow node answered " + status);
        this.status = status;
        this.body = body;
        this.contentType = contentType;
    }

    /** The failure behind any wrapper; anything that is not a NodeFailure is a plain 500. */
    public static NodeFailure of(Throwable error) {
        Throwable cause = unwrap(error);
        if (cause instanceof NodeFailure) {
            return (NodeFailure) cause;
        }
        String message = cause == null ? null : cause.getMessage();
        return new NodeFailure(500, message == null ? "Workflow execution failed" : message);
    }

    /** The cause behind CompletionException / ExecutionException wrappers. */
    public static Throwable unwrap(Throwable error) {
        Throwable cause = error;
        while ((cause instanceof CompletionException || cause instanceof ExecutionException)
                && cause.getCause() != null) {
            cause = cause.getCause();
        }
        return cause;
    }

    public int getStatus() {
        return status;
    }

    /** The node's response body, or null when only a message is known. */
    public byte[] getBody() {
        return body;
    }

    public CharSequence getContentType() {
        return contentType;
    }
}
