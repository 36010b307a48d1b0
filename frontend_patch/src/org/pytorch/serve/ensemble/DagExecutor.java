package org.pytorch.serve.ensemble;

import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.UUID;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import org.pytorch.serve.http.InternalServerException;
import org.pytorch.serve.job.RestJob;
import org.pytorch.serve.util.messages.InputParameter;
import org.pytorch.serve.util.messages.RequestInput;
import org.pytorch.serve.util.messages.WorkerCommands;
import org.pytorch.serve.wlm.ModelManager;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Runs one workflow request through its DAG.
 *
 * <p>cvserve patch of TorchServe 0.12.0 (see frontend_patch/README.md):
 *
 * <ul>
 *   <li>A node's job gets its response promise BEFORE it is queued (0.12.0 queued first, so a
 *       fast node's answer could be dropped and the DAG waited timeout-ms and retried).
 *   <li>Node calls are asynchronous: no thread pool per request, the calling thread only waits
 *       for the next finished node.
 *   <li>A node's real status travels up as {@link NodeFailure}: 4xx and a full queue (503) end
 *       the workflow at once; only timeouts and other 5xx are retried, with a fresh request id.
 * </ul>
 */
public class DagExecutor {

    private static final Logger logger = LoggerFactory.getLogger(DagExecutor.class);

    private Dag dag;
    private Map<String, RequestInput> inputRequestMap;

    public DagExecutor(Dag dag) {
        this.dag = dag;
        inputRequestMap = new ConcurrentHashMap<>();
    }

    public ArrayList<NodeOutput> execute(RequestInput input, ArrayList<String> topoSortedList) {

        BlockingQueue<CompletableFuture<NodeOutput>> finished = new LinkedBlockingQueue<>();

        Map<String, Integer> inDegreeMap = this.dag.getInDegreeMap();
        Set<String> zeroInDegree = dag.getStartNodeNames();
        Set<String> executing = new HashSet<>();

        if (topoSortedList == null) {
            for (String s : zeroInDegree) {
                RequestInput newInput = new RequestInput(UUID.randomUUID().toString());
                newInput.setHeaders(input.getHeaders());
                newInput.setParameters(input.getParameters());
                inputRequestMap.put(s, newInput);
            }
        }

        ArrayList<NodeOutput> leafOutputs = new ArrayList<>();

        while (!zeroInDegree.isEmpty()) {
            Set<String> readyToExecute = new HashSet<>(zeroInDegree);
            readyToExecute.removeAll(executing);
            executing.addAll(readyToExecute);

            ArrayList<NodeOutput> outputs = new ArrayList<>();
            if (topoSortedList == null) {
                for (String name : readyToExecute) {
                    CompletableFuture<NodeOutput> node =
                            invokeModel(
                                    name,
                                    this.dag.getNodes().get(name).getWorkflowModel(),
                                    inputRequestMap.get(name),
                                    0);
                    node.whenComplete((output, error) -> finished.add(node));
                }

                try {
                    outputs.add(finished.take().join());
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                    throw new InternalServerException("Workflow execution was interrupted");
                } catch (CompletionException e) {
                    throw NodeFailure.of(e);
                }
            } else {
                for (String name : readyToExecute) {
                    outputs.add(new NodeOutput(name, null));
                }
            }

            for (NodeOutput output : outputs) {
                String nodeName = output.getNodeName();
                executing.remove(nodeName);
                zeroInDegree.remove(nodeName);

                if (topoSortedList != null) {
                    topoSortedList.add(nodeName);
                }

                Set<String> childNodes = this.dag.getDagMap().get(nodeName).get("outDegree");
                if (childNodes.isEmpty()) {
                    leafOutputs.add(output);
                } else {
                    for (String newNodeName : childNodes) {

                        if (topoSortedList == null) {
                            byte[] response = (byte[]) output.getData();

                            RequestInput newInput = this.inputRequestMap.get(newNodeName);
                            if (newInput == null) {
                                List<InputParameter> params = new ArrayList<>();
                                newInput = new RequestInput(UUID.randomUUID().toString());
                                if (inDegreeMap.get(newNodeName) == 1) {
                                    params.add(new InputParameter("body", response));
                                } else {
                                    params.add(new InputParameter(nodeName, response));
                                }
                                newInput.setParameters(params);
                                newInput.setHeaders(input.getHeaders());
                            } else {
                                newInput.addParameter(new InputParameter(nodeName, response));
                            }
                            this.inputRequestMap.put(newNodeName, newInput);
                        }

                        inDegreeMap.replace(newNodeName, inDegreeMap.get(newNodeName) - 1);
                        if (inDegreeMap.get(newNodeName) == 0) {
                            zeroInDegree.add(newNodeName);
                        }
                    }
                }
            }
        }

        return leafOutputs;
    }

    /** One attempt at a node; retries (timeouts and 5xx other than 503) chain onto it. */
    private CompletableFuture<NodeOutput> invokeModel(
            String nodeName, WorkflowModel workflowModel, RequestInput input, int retryAttempt) {
        logger.debug("Invoking - {} for attempt {}", nodeName, retryAttempt);
        NodeJob job = new NodeJob(workflowModel.getName(), input);
        CompletableFuture<byte[]> answer = job.answer(); // attached before the job is queued
        try {
            if (!ModelManager.getInstance().addJob(job)) {
                return CompletableFuture.failedFuture(
                        new NodeFailure(
                                503,
                                String.format(
                                        "Workflow node %s: model %s is busy (job queue full);"
                                                + " retry later",
                                        nodeName, workflowModel.getName())));
            }
        } catch (Exception e) { // model or version not found
            return CompletableFuture.failedFuture(
                    new NodeFailure(
                            500,
                            String.format(
                                    "Workflow node %s: %s", nodeName, e.getMessage())));
        }
        return answer.orTimeout(workflowModel.getTimeOutMs(), TimeUnit.MILLISECONDS)
                .thenApply(body -> new NodeOutput(nodeName, body))
                .exceptionallyCompose(
                        error -> {
                            Throwable cause = NodeFailure.unwrap(error);
                            if (isRetriable(cause)
                                    && retryAttempt < workflowModel.getRetryAttempts()) {
                                logger.warn(
                                        "Retrying workflow node {} after attempt {}: {}",
                                        nodeName,
                                        retryAttempt,
                                        describe(cause));
                                return invokeModel(
                                        nodeName,
                                        workflowModel,
                                        freshCopy(input),
                                        retryAttempt + 1);
                            }
                            if (cause instanceof TimeoutException) {
                                logger.error(
                                        "Workflow node {} timed out after {} ms, attempt {}",
                                        nodeName,
                                        workflowModel.getTimeOutMs(),
                                        retryAttempt);
                                return CompletableFuture.failedFuture(
                                        new NodeFailure(
                                                504,
                                                String.format(
                                                        "Workflow node %s did not answer within"
                                                                + " %d ms",
                                                        nodeName,
                                                        workflowModel.getTimeOutMs())));
                            }
                            return CompletableFuture.failedFuture(NodeFailure.of(cause));
                        });
    }

    private static boolean isRetriable(Throwable cause) {
        if (cause instanceof TimeoutException) {
            return true;
        }
        if (cause instanceof NodeFailure) {
            int status = ((NodeFailure) cause).getStatus();
            return status >= 500 && status != 503;
        }
        return false;
    }

    private static String describe(Throwable cause) {
        if (cause instanceof TimeoutException) {
            return "timed out";
        }
        return cause.getMessage();
    }

    /** A retry is a new job: the first attempt may still be in a worker under the old id. */
    private static RequestInput freshCopy(RequestInput input) {
        RequestInput copy = new RequestInput(UUID.randomUUID().toString());
        copy.setHeaders(input.getHeaders());
        copy.setParameters(input.getParameters());
        return copy;
    }

    /**
     * A node's job: a RestJob without a channel whose answer completes a promise that exists
     * from construction on, with the worker's status kept (0.12.0 dropped it).
     */
    static final class NodeJob extends RestJob {
        private final CompletableFuture<byte[]> promise = new CompletableFuture<>();
        private volatile int status = 200;
        private volatile CharSequence contentType;

        NodeJob(String modelName, RequestInput input) {
            super(null, modelName, null, WorkerCommands.PREDICT, input);
            setResponsePromise(promise);
        }

        /** The node's body, or a {@link NodeFailure} for any status of 400 and above. */
        CompletableFuture<byte[]> answer() {
            return promise.thenApply(
                    body -> {
                        if (status >= 400) {
                            throw new NodeFailure(status, body, contentType);
                        }
                        return body;
                    });
        }

        @Override
        public void response(
                byte[] body,
                CharSequence contentType,
                int statusCode,
                String statusPhrase,
                Map<String, String> responseHeaders) {
            this.status = statusCode;
            this.contentType = contentType;
            super.response(body, contentType, statusCode, statusPhrase, responseHeaders);
        }

        @Override
        public void sendError(int status, String error) {
            // Same mapping as RestJob does for a client channel: the backend's 413 means
            // "Worker died.", which TorchServe answers as 507.
            int code = (status == 413) ? 507 : status;
            promise.completeExceptionally(new NodeFailure(code, error));
        }

        @Override
        public boolean isOpen() {
            return true;
        }
    }
}
